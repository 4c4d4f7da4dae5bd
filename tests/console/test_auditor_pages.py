"""The auditor's accounting of disclosures: content, period filter, exports, authorisation."""

import csv
import io
from datetime import timedelta

from tests.console.conftest import record_read


def test_disclosures_per_product_and_period_with_exports(people, estate, engine, clock):
    dua, grant = estate.approved_grant()
    start = clock.now()
    for day, version, files, size in (
        (1, "1.0.0", 2, 1000),
        (2, "1.1.0", 3, 500),
        (40, "1.1.0", 2, 1000),
    ):
        record_read(
            engine,
            start + timedelta(days=day),
            version=version,
            dua=dua["id"],
            files=files,
            size=size,
        )
    auditor = people("auditor1")
    empty = auditor.get("/console/audit/disclosures")
    assert empty.status_code == 200 and "Choose a product" in empty.text
    assert '<option value="st-marys/patients"></option>' in empty.text

    until = (start + timedelta(days=10)).date().isoformat()
    page = auditor.get(f"/console/audit/disclosures?product=st-marys/patients&to={until}").text
    row = page.split("One line per recipient")[1].split("</tbody>")[0]
    assert "<td>research-lab</td><td>#" + str(dua["id"]) + "</td>" in row
    assert "<td>research</td><td>deidentified</td><td>1.0.0, 1.1.0</td>" in row
    assert "<td>2</td><td>5</td><td>1500</td>" in row  # requests, files, bytes: day 40 left out
    grants = page.split("Grants in force over the period")[1]
    assert f"<td>{grant['id']}</td><td>research-lab</td><td>deidentified</td>" in grants

    exported = auditor.get(
        f"/console/audit/disclosures/export?product=st-marys/patients&to={until}&format=csv"
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="disclosures-st-marys-patients.csv"' in exported.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(lines) == 1
    assert lines[0]["organization"] == "research-lab" and lines[0]["bytes"] == "1500"
    assert lines[0]["product_versions"] == "1.0.0 1.1.0" and lines[0]["dua"] == str(dua["id"])
    as_json = auditor.get(
        "/console/audit/disclosures/export?product=st-marys/patients&format=json"
    ).json()
    api = estate.call(
        "root", "GET", "/api/v1/audit/disclosures", params={"product": "st-marys/patients"}
    ).json()
    assert as_json == api and as_json["disclosures"][0]["requests"] == 3

    nobody = auditor.get("/console/audit/disclosures?product=riverside/vitals").text
    assert "Nobody read riverside/vitals in this period" in nobody
    assert "No grant of riverside/vitals was in force" in nobody


def test_consumers_and_publishers_cannot_open_disclosures(people):
    for who in ("researcher", "pub-sm"):
        p = people(who)
        r = p.get("/console/audit/disclosures?product=st-marys/patients")
        assert r.status_code == 403 and "missing permission audit:read" in r.text
        assert (
            p.get("/console/audit/disclosures/export?product=st-marys/patients").status_code == 403
        )
