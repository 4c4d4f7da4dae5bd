"""Referential completeness: orphan rates measured on source ids against real Delta tables.

Hand-made NDJSON with known orphans, published through the real services on SQLite and
PostgreSQL; registration and products-file validation of `references`.
"""

import json
from functools import partial

import pytest
from deltalake import DeltaTable

from catalog.kernel.errors import ValidationFailed
from catalog.manifest.loader import ManifestError, parse_manifest
from catalog.products import service as products
from catalog.products.models import ProductSpec, VersionSpec, VersionStatus
from tests.catalog.publishing import conftest
from tests.catalog.publishing.conftest import EXTRACTED, key_column, view_definition
from tests.factories import ACTOR, domain_body, make_domain
from tests.problems import assert_problem

PATIENT_VIEW = view_definition(
    "patients", "Patient", patient_id="getResourceKey()", gender="gender"
)
PATIENT_COLUMNS = [c for c in conftest.PATIENT_COLUMNS if c["name"] in ("patient_id", "gender")]
OBS_VIEW = view_definition(
    "observations",
    "Observation",
    observation_id="getResourceKey()",
    patient_id="subject.getReferenceKey(Patient)",
    code="code.coding.code.first()",
)
publish = partial(conftest.publish, extracted_at=EXTRACTED)  # these exports have no manifest


def obs_columns(ref="patients.patient_id", patient_type="string"):
    return [
        key_column("observation_id", "Observation"),
        {
            "name": "patient_id",
            "type": patient_type,
            "classification": "direct_identifier",
            "surrogate": "Patient",
            "references": ref,
        },
        {"name": "code", "type": "string", "classification": "clinical"},
    ]


def patient(pid, gender="female"):
    return {"resourceType": "Patient", "id": pid, "gender": gender}


def observation(oid, pid):
    resource = {
        "resourceType": "Observation",
        "id": oid,
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    }
    if pid is not None:
        resource["subject"] = {"reference": f"Patient/{pid}"}
    return resource


def write(folder, name, resources):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    return folder


def product(session, clock, name, resource):
    return products.create_product(
        session,
        "st-marys",
        ProductSpec.model_validate(
            {
                "name": name,
                "title": name.title(),
                "owner_team": "Data",
                "owner_email": "d@example.org",
                "source_resources": [resource],
            }
        ),
        actor=ACTOR,
        clock=clock,
    )


def register(session, clock, prod, columns, view, version="1.0.0", **sla):
    spec = VersionSpec.model_validate(
        {
            "version": version,
            "columns": columns,
            "tiers": ["deidentified", "full"],
            "sla": {"max_quarantined_percent": 50, **sla},
            "view": view,
        }
    )
    return products.register_version(session, prod, spec, actor=ACTOR, clock=clock)


def check_of(version):
    found = [c for c in version.checks if c["name"] == "referential-completeness:patient_id"]
    assert len(found) == 1, version.checks
    return found[0]


@pytest.fixture
def patients(session, clock):
    make_domain(session, clock)
    prod = product(session, clock, "patients", "Patient")
    return register(session, clock, prod, PATIENT_COLUMNS, PATIENT_VIEW)


@pytest.fixture
def observations(session, clock, patients):
    return product(session, clock, "observations", "Observation")


@pytest.fixture
def published_patients(session, clock, patients, tmp_path, publish_settings):
    """p1..p5 published; p6's gender is outside the value set, so p6 is quarantined."""
    folder = write(
        tmp_path / "sources" / "st-marys" / "pat",
        "Patient.ndjson",
        [*(patient(f"p{i}") for i in range(1, 6)), patient("p6", gender="X")],
    )
    version = publish(session, patients, folder, publish_settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    assert version.counts["quarantined_by_rule"] == {"value-set": 1}
    return version


def obs_export(tmp_path, pids, name="obs"):
    return write(
        tmp_path / "sources" / "st-marys" / name,
        "Observation.ndjson",
        [observation(f"o{i}", pid) for i, pid in enumerate(pids)],
    )


def test_known_orphans_are_counted_exactly(
    session, clock, published_patients, observations, tmp_path, publish_settings
):
    # 6 matching, 3 orphans (2 distinct ids), 1 without a subject (null: not counted).
    pids = ["p1", "p2", "p3", "p4", "p5", "p1", "ghost1", "ghost1", "ghost2", None]
    version = register(session, clock, observations, obs_columns(), OBS_VIEW, max_orphan_percent=40)
    version = publish(session, version, obs_export(tmp_path, pids), publish_settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    check = check_of(version)
    assert check["passed"] is True
    assert check["measured"] == 33.333 and check["threshold"] == 40
    assert check["facts"] == {
        "references": "patients.patient_id",
        "referenced_version": "1.0.0",
        "referenced_delta_version": published_patients.tier_tables["full"]["delta_version"],
        "checked": 9,
        "orphans": 3,
        "distinct_orphans": 2,
        "orphans_quarantined": 0,
    }
    assert "3 of 9 non-null values match no row" in check["detail"]
    # The deidentified tier holds surrogates, yet the measurement was on source ids.
    deid = version.tier_tables["deidentified"]
    values = DeltaTable(deid["location"]).to_pyarrow_table().column("patient_id").to_pylist()
    assert "p1" not in values


def test_orphans_above_the_bound_quarantine_the_version(
    session, clock, published_patients, observations, tmp_path, publish_settings
):
    version = register(session, clock, observations, obs_columns(), OBS_VIEW)  # default: 0%
    version = publish(
        session, version, obs_export(tmp_path, ["p1", "p2", "nobody"]), publish_settings, clock
    )
    assert version.status == VersionStatus.QUARANTINED
    assert "referential-completeness:patient_id" in version.status_reason
    check = check_of(version)
    assert check["passed"] is False and check["measured"] == 33.333 and check["threshold"] == 0
    assert check["facts"]["orphans"] == 1
    assert version.tier_tables is None


def test_no_orphans(session, clock, published_patients, observations, tmp_path, publish_settings):
    version = register(session, clock, observations, obs_columns(), OBS_VIEW)
    pids = ["p1", "p2", "p3", "p4", "p5", None]
    version = publish(session, version, obs_export(tmp_path, pids), publish_settings, clock)
    assert version.status == VersionStatus.PUBLISHED, version.checks
    check = check_of(version)
    assert check["passed"] is True and check["measured"] == 0.0
    assert check["facts"]["checked"] == 5 and check["facts"]["orphans"] == 0


def test_referenced_product_unpublished_fails_the_check(
    session, clock, patients, observations, tmp_path, publish_settings
):
    version = register(session, clock, observations, obs_columns(), OBS_VIEW)
    version = publish(session, version, obs_export(tmp_path, ["p1"]), publish_settings, clock)
    assert version.status == VersionStatus.QUARANTINED
    check = check_of(version)
    assert check["passed"] is False and check["measured"] is None
    assert "st-marys/patients has no published version: publish it first" in check["detail"]
    assert check["facts"] == {"references": "patients.patient_id", "referenced_version": None}


def test_a_quarantined_patient_makes_an_orphan_reported_as_such(
    session, clock, published_patients, observations, tmp_path, publish_settings
):
    version = register(
        session, clock, observations, obs_columns(), OBS_VIEW, max_orphan_percent=100
    )
    pids = ["p1", "p6", "p6", "ghost"]
    version = publish(session, version, obs_export(tmp_path, pids), publish_settings, clock)
    check = check_of(version)
    assert check["facts"]["orphans"] == 3
    assert check["facts"]["orphans_quarantined"] == 2  # p6 was held back from patients 1.0.0
    assert "2 of the orphan rows point at records quarantined in 1.0.0" in check["detail"]


def test_measured_against_the_latest_published_version(
    session, clock, published_patients, observations, tmp_path, publish_settings
):
    # The first measurement stays as taken; the next version is measured against patients 1.1.0.
    first = register(session, clock, observations, obs_columns(), OBS_VIEW, max_orphan_percent=100)
    first = publish(session, first, obs_export(tmp_path, ["p1", "p7"]), publish_settings, clock)
    assert check_of(first)["facts"]["orphans"] == 1
    newer = register(
        session, clock, published_patients.product, PATIENT_COLUMNS, PATIENT_VIEW, "1.1.0"
    )
    folder = write(
        tmp_path / "sources" / "st-marys" / "pat2",
        "Patient.ndjson",
        [patient(f"p{i}") for i in range(1, 8)],
    )
    assert publish(session, newer, folder, publish_settings, clock).status == "published"
    second = register(
        session, clock, observations, obs_columns(), OBS_VIEW, "1.0.1", max_orphan_percent=100
    )
    second = publish(
        session, second, obs_export(tmp_path, ["p1", "p7"], "obs2"), publish_settings, clock
    )
    assert check_of(second)["facts"]["orphans"] == 0
    assert check_of(second)["facts"]["referenced_version"] == "1.1.0"
    assert check_of(first)["facts"]["orphans"] == 1


@pytest.mark.parametrize(
    ("ref", "patient_type", "message"),
    [
        ("patients.patient_id", "int64", "patients.patient_id is string, not int64"),
        ("patients.nope", "string", "patients 1.0.0 has no column 'nope'"),
        ("visits.patient_id", "string", "domain st-marys has no product 'visits'"),
        ("observations.patient_id", "string", "references another product, not its own"),
    ],
)
def test_bad_references_are_refused_at_registration(
    session, clock, observations, ref, patient_type, message
):
    with pytest.raises(ValidationFailed) as caught:
        register(session, clock, observations, obs_columns(ref, patient_type), OBS_VIEW)
    assert message in caught.value.detail
    assert caught.value.errors[0].path == "columns[1].references"


def test_type_mismatch_is_a_problem_on_the_api(client):
    assert client.post("/api/v1/domains", json=domain_body("st-marys")).status_code == 201
    for name, resource, columns, view in (
        ("patients", "Patient", PATIENT_COLUMNS, PATIENT_VIEW),
        ("observations", "Observation", obs_columns(patient_type="int64"), OBS_VIEW),
    ):
        r = client.post(
            "/api/v1/domains/st-marys/products",
            json={
                "name": name,
                "title": name,
                "owner_team": "Data",
                "owner_email": "d@example.org",
                "source_resources": [resource],
            },
        )
        assert r.status_code == 201, r.text
        r = client.post(
            f"/api/v1/products/st-marys/{name}/versions",
            json={"version": "1.0.0", "columns": columns, "tiers": ["full"], "view": view},
        )
    assert_problem(r, 422)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert "patients.patient_id is string, not int64" in body["detail"]
    assert body["errors"][0]["path"] == "columns[1].references"


def products_file(patients_first=True, patient_type="string", ref="patients.patient_id"):
    pat = """
      - name: patients
        title: Patients
        owner_team: Data
        owner_email: d@example.org
        source_resources: [Patient]
        versions:
          - version: 1.0.0
            tiers: [full]
            columns:
              - {name: patient_id, type: string, nullable: false,
                 classification: direct_identifier}
"""
    obs = f"""
      - name: observations
        title: Observations
        owner_team: Data
        owner_email: d@example.org
        source_resources: [Observation]
        versions:
          - version: 1.0.0
            tiers: [full]
            sla: {{max_orphan_percent: 1}}
            columns:
              - {{name: observation_id, type: string, classification: direct_identifier}}
              - {{name: patient_id, type: {patient_type}, classification: direct_identifier,
                 references: {ref}}}
"""
    head = """domains:
  - name: st-marys
    kind: facility
    title: St Mary's
    owner_team: Data
    contact_email: d@example.org
    products:"""
    return head + (pat + obs if patients_first else obs + pat)


def test_products_file_references_are_validated():
    manifest = parse_manifest(products_file(), source="p.yaml")
    column = manifest.domains[0].products[1].versions[0].columns[1]
    assert column.references == "patients.patient_id"
    assert manifest.domains[0].products[1].versions[0].sla.max_orphan_percent == 1
    cases = [
        (
            products_file(patient_type="int64"),
            "p.yaml:32: domains[0].products[1].versions[0].columns[1].references: "
            "patients.patient_id: patients.patient_id is string, not int64",
        ),
        (
            products_file(patients_first=False),
            "p.yaml:20: domains[0].products[0].versions[0].columns[1].references: "
            "patients.patient_id: declare patients before observations",
        ),
        (
            products_file(ref="patients"),
            "p.yaml:32: domains[0].products[1].versions[0].columns[1].references: "
            "expected product.column (a column of another product of the same domain, "
            "e.g. patients.patient_id), got 'patients'",
        ),
    ]
    for text, expected in cases:
        with pytest.raises(ManifestError) as caught:
            parse_manifest(text, source="p.yaml")
        assert caught.value.lines()[0].startswith(expected), caught.value.lines()
