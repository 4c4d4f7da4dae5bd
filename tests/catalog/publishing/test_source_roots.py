"""A domain's products are published only from that domain's source roots.

The probe: a riverside publisher published St Mary's export into a riverside product, because
every domain shared `HOME/sources`. Now each domain reads `<root>/<domain>/` only (or the folders
`MESH_PUBLISH_SOURCE_ROOTS` names for it), links and Delta logs cannot reach out of it, and each
refusal is a problem+json 403 with an audit entry.
"""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from litestar.testing import TestClient
from sqlmodel import Session, col, select

from catalog.app import create_app
from catalog.audit.models import AuditEvent
from catalog.kernel.errors import Forbidden
from catalog.kernel.settings import Settings
from catalog.publishing import service
from tests.catalog.publishing.conftest import LEGACY_FORMATS, PATIENT_COLUMNS, PATIENT_VIEW
from tests.conftest import ADMIN_TOKEN
from tests.factories import domain_body
from tests.problems import assert_problem

PUBLISH = "/api/v1/products/riverside/patients/versions/1.0.0/publish"


@pytest.fixture
def api(publish_settings, engine, clock):
    with TestClient(create_app(publish_settings, engine=engine, clock=clock)) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        for name in ("st-marys", "riverside"):
            assert client.post("/api/v1/domains", json=domain_body(name)).status_code == 201
        product = {
            "name": "patients",
            "title": "Patients",
            "owner_team": "ED",
            "owner_email": "ed@example.org",
            "source_resources": ["Patient"],
        }
        assert client.post("/api/v1/domains/riverside/products", json=product).status_code == 201
        version = {
            "version": "1.0.0",
            "columns": PATIENT_COLUMNS,
            "tiers": ["deidentified", "full"],
            "sla": {"max_quarantined_percent": 60, "max_findings_percent": 60},
            "view": PATIENT_VIEW,
            "legacy_date_formats": LEGACY_FORMATS,
        }
        r = client.post("/api/v1/products/riverside/patients/versions", json=version)
        assert r.status_code == 201, r.text
        yield client


def _refused(api, engine, source: Path | str, because: str) -> None:
    r = api.post(PUBLISH, json={"source": str(source)})
    assert_problem(r, 403)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert because in r.json()["detail"] and "for domain riverside" in r.json()["detail"]
    with Session(engine) as session:
        entry = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "publish.refused")
            .order_by(col(AuditEvent.id).desc())
        ).first()
    assert entry is not None
    assert (entry.outcome, entry.subject, entry.product) == (
        "denied",
        "riverside/patients@1.0.0",
        "riverside/patients",
    )
    assert entry.details["source"] == str(source)


def test_a_domain_cannot_publish_another_domains_export(api, engine, export_dir, tmp_path):
    sources = tmp_path / "sources"
    assert export_dir == sources / "st-marys"
    _refused(api, engine, export_dir, "outside the folders")  # St Mary's export, riverside product
    _refused(api, engine, sources, "outside the folders")  # the parent of every domain's root

    riverside = sources / "riverside"
    riverside.mkdir()
    (riverside / "linked").symlink_to(export_dir, target_is_directory=True)
    _refused(api, engine, riverside / "linked", "outside the folders")  # a link out of the root
    one_file = riverside / "one-file"
    one_file.mkdir()
    (one_file / "Patient.ndjson").symlink_to(export_dir / "Patient.ndjson")
    _refused(api, engine, one_file, "Patient.ndjson points outside them")

    own = riverside / "export-1"
    shutil.copytree(export_dir, own)
    r = api.post(PUBLISH, json={"source": str(own)})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "published"


def test_a_delta_source_cannot_reach_another_domains_files(publish_settings, tmp_path):
    theirs = tmp_path / "sources" / "st-marys" / "table"
    write_deltalake(str(theirs), pa.table({"patient_id": ["p1"]}))
    ours = tmp_path / "sources" / "riverside" / "table"
    write_deltalake(str(ours), pa.table({"patient_id": ["r1"]}))
    (ours_file,) = ours.glob("*.parquet")
    (their_file,) = theirs.glob("*.parquet")
    ours_file.unlink()
    ours_file.symlink_to(their_file)  # the table's data file is another domain's
    with pytest.raises(Forbidden, match="points outside them"):
        service.check_source_allowed(publish_settings, str(ours), domain="riverside")
    ours_file.unlink()
    ours_file.write_bytes(their_file.read_bytes())  # a copy is the publisher's own data
    service.check_source_allowed(publish_settings, str(ours), domain="riverside")
    log = ours / "_delta_log" / f"{0:020d}.json"
    moved = log.with_suffix(".moved")
    log.rename(moved)
    log.symlink_to(theirs / "_delta_log" / log.name)  # the log itself another domain's
    with pytest.raises(Forbidden, match="points outside them"):
        service.check_source_allowed(publish_settings, str(ours), domain="riverside")
    assert service.check_source_allowed(publish_settings, str(theirs), domain="st-marys")


def test_roots_named_per_domain(monkeypatch, tmp_path):
    named = tmp_path / "exports" / "rv"
    monkeypatch.setenv("MESH_PUBLISH_SOURCE_ROOTS", json.dumps({"riverside": [str(named)]}))
    settings = Settings(home=tmp_path / "home")
    assert settings.source_roots("riverside") == [named.resolve()]
    assert settings.source_roots("st-marys") == []  # a domain it does not name reads nothing
    assert service.check_source_allowed(settings, str(named / "x"), domain="riverside")
    with pytest.raises(Forbidden):
        service.check_source_allowed(settings, str(named / "x"), domain="st-marys")
    monkeypatch.delenv("MESH_PUBLISH_SOURCE_ROOTS")
    for odd in ("..", ".", "st-marys/..", "", "Labs"):
        assert Settings(home=tmp_path / "home").source_roots(odd) == []
    default = Settings(home=tmp_path / "home")
    assert default.source_roots("labs") == [(tmp_path / "home" / "sources" / "labs").resolve()]
