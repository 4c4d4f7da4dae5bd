"""Fixtures for publishing: a patients product with a real view, and dirty NDJSON exports."""

import json
from datetime import UTC, datetime

import pytest
from deltalake import DeltaTable

from catalog.kernel.settings import Settings
from catalog.products import service
from catalog.products.models import ProductSpec, VersionSpec
from catalog.publishing import service as publishing
from tests.conftest import ADMIN_TOKEN
from tests.factories import ACTOR, domain_body, make_domain


def view_definition(name, resource, /, **paths):
    """A ViewDefinition `name` over `resource`: a column for each keyword, its FHIRPath the value."""
    return {
        "resourceType": "ViewDefinition",
        "name": name,
        "resource": resource,
        "select": [{"column": [{"name": column, "path": path} for column, path in paths.items()]}],
    }


def key_column(name, resource):
    """The required identifier column `name`, replaced by a surrogate of `resource` ids."""
    return {
        "name": name,
        "type": "string",
        "nullable": False,
        "classification": "direct_identifier",
        "surrogate": resource,
    }


PATIENT_VIEW = view_definition(
    "patients",
    "Patient",
    patient_id="getResourceKey()",
    mrn="identifier.where(type.coding.code = 'MR').value.first()",
    family_name="name.where(use = 'official').family.first()",
    given_name="name.where(use = 'official').given.first()",
    birth_date="birthDate",
    gender="gender",
    address_line="address.line.first()",
    city="address.city.first()",
    state="address.state.first()",
    postal_code="address.postalCode.first()",
    phone="telecom.where(system = 'phone').value.first()",
    note="text.`div`",
)

PATIENT_COLUMNS = [
    key_column("patient_id", "Patient"),
    {"name": "mrn", "type": "string", "classification": "direct_identifier"},
    {"name": "family_name", "type": "string", "classification": "direct_identifier"},
    {"name": "given_name", "type": "string", "classification": "direct_identifier"},
    {"name": "birth_date", "type": "date32", "classification": "date"},
    {
        "name": "gender",
        "type": "string",
        "classification": "none",
        "allowed_values": ["male", "female", "other", "unknown"],
    },
    {"name": "address_line", "type": "string", "classification": "direct_identifier"},
    {"name": "city", "type": "string", "classification": "quasi_identifier"},
    {"name": "state", "type": "string", "classification": "none"},
    {"name": "postal_code", "type": "string", "classification": "zip"},
    {"name": "phone", "type": "string", "classification": "direct_identifier"},
    {"name": "note", "type": "string", "classification": "free_text"},
]


def patient(
    pid,
    family,
    given,
    birth,
    *,
    zip_code="98052",
    gender="female",
    city="Redmond",
    mrn=None,
    phone=None,
):
    resource = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn or f"MRN-{pid}"}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "address": [
            {
                "line": [f"{len(family)} {family} Street"],
                "city": city,
                "state": "WA",
                "postalCode": zip_code,
            }
        ],
        "telecom": [{"system": "phone", "value": phone or f"555-01{len(pid):02d}"}],
        "text": {"status": "generated", "div": f"<div>{given} {family}</div>"},
    }
    if birth is not None:
        resource["birthDate"] = birth
    return resource


def line(resource):
    return json.dumps(resource, separators=(",", ":"))


GOOD = [
    patient("p1", "Okafor", "Adaeze", "1980-05-17", zip_code="98052-1234"),
    patient("p2", "Lindqvist", "Henrik", "05/17/1961", gender="male", zip_code="03601"),
    patient("p3", "Moreau", "Camille", "1930-02-01", zip_code="89301"),
    patient("p4", "Nakamura", "Yui", "19991231", city="Seattle"),
    patient("p5", "Haddad", "Omar", None, gender="male"),
    patient("p6", "Ivanova", "Daria", "17-May-1975", zip_code="not-a-zip"),
]


# Records whose rows are kept although not clean: p7's birth date is no date at all (a finding,
# the cell is null), p10's is a valid FHIR partial date (kept as 1950-03-01, precision month).
# Until findings existed both records were quarantined (rules `date` and `partial-date`).
KEPT_DIRTY = [
    patient("p7", "Brown", "Alex", "unknown"),
    patient("p10", "White", "Lee", "1950-03"),
]
ROWS = [*GOOD, *KEPT_DIRTY]
# The legacy shapes GOOD's birth dates use (05/17/1961, 19991231, 17-May-1975): the fixture's
# export comes from an HL7-era feed that declares them.
LEGACY_FORMATS = ["MM/DD/YYYY", "YYYYMMDD", "DD-Mon-YYYY"]


def dirty_lines():
    """Good patients plus one of each kind of dirt; returns (text, expected quarantine rules).

    p7 (no date at all) and p10 (a partial date) keep their rows: see KEPT_DIRTY.
    """
    lines = [line(p) for p in GOOD]
    lines.append(line(GOOD[0]))  # exact duplicate
    lines.append(line(patient("p2", "Lindqvist", "Henrik", "1961-05-18")))  # same id, other content
    lines.append(line({"resourceType": "Observation", "id": "o1"}))  # wrong type
    lines.append("{not json at all}")
    lines.append(line(patient("p7", "Brown", "Alex", "unknown")))  # unparseable date
    lines.append(line(patient("p8", "Green", "Sam", "1970-01-01", gender="X")))  # not in value set
    lines.append(
        line({k: v for k, v in patient("p9", "Gray", "Kim", "1970-01-01").items() if k != "id"})
    )
    lines.append("")  # blank line: not a record
    lines.append(line(patient("p10", "White", "Lee", "1950-03")))  # partial date
    lines.append(line(patient("p11", "Black", "Ray", "1960-01-01"))[:40])  # truncated last line
    rules = [
        "duplicate",
        "duplicate-id",
        "resource-type",
        "json",
        "value-set",
        "id",
        "json",
    ]
    return "\n".join(lines), rules


@pytest.fixture
def export_dir(tmp_path):
    """A Bulk export folder with a dirty Patient.ndjson and an unrelated file."""
    folder = tmp_path / "sources" / "st-marys"
    folder.mkdir(parents=True)
    text, _ = dirty_lines()
    (folder / "Patient.ndjson").write_text(text, encoding="utf-8")
    (folder / "Practitioner.ndjson").write_text(
        line({"resourceType": "Practitioner", "id": "dr1"}) + "\n"
    )
    (folder / "manifest.json").write_text(
        json.dumps({"transactionTime": "2026-01-15T08:00:00Z", "output": []})
    )
    return folder


@pytest.fixture
def publish_settings(tmp_path, database_url):
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        publish_source_roots=[tmp_path / "sources"],
        admin_token=ADMIN_TOKEN,
    )


VERSION_BODY = {
    "version": "1.0.0",
    "columns": PATIENT_COLUMNS,
    "tiers": ["deidentified", "limited", "full"],
    "sla": {
        "completeness": ["birth_date >= 60%"],
        "max_quarantined_percent": 60,
        "max_findings_percent": 60,
    },
    "view": PATIENT_VIEW,
    "legacy_date_formats": LEGACY_FORMATS,
}


def version_spec(version="1.0.0", **overrides):
    return VersionSpec.model_validate(VERSION_BODY | {"version": version} | overrides)


def new_product(
    session,
    clock,
    domain="st-marys",
    name="patients",
    *,
    team=("Reg", "r@example.org"),
    resource="Patient",
):
    """`domain` (made here) and a product `name` in it: `team` (name, email) owns it, it is
    built from `resource`."""
    make_domain(session, clock, name=domain)
    return service.create_product(
        session,
        domain,
        ProductSpec.model_validate(
            {
                "name": name,
                "title": name.title(),
                "owner_team": team[0],
                "owner_email": team[1],
                "source_resources": [resource],
            }
        ),
        actor=ACTOR,
        clock=clock,
    )


# Riverside's emergency-department stays, for the sources that are not FHIR NDJSON.
STAYS = {
    "domain": "riverside",
    "name": "stays",
    "team": ("ED", "ed@example.org"),
    "resource": "Encounter",
}


@pytest.fixture
def patients_version(session, clock):
    product = new_product(session, clock)
    return service.register_version(session, product, version_spec(), actor=ACTOR, clock=clock)


EXTRACTED = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
__all__ = [
    "EXTRACTED",
    "GOOD",
    "KEPT_DIRTY",
    "LEGACY_FORMATS",
    "PATIENT_COLUMNS",
    "PATIENT_VIEW",
    "ROWS",
    "STAYS",
    "VERSION_BODY",
    "domain_body",
    "new_product",
    "patient",
    "version_spec",
]


def publish(session, version, source, settings, clock, **kw):
    """`publish_version` by the tests' actor."""
    return publishing.publish_version(
        session, version, source, settings=settings, clock=clock, actor=ACTOR, **kw
    )


def read(version, tier, delta_version=None):
    """The rows of one tier of a published version (its Delta version, or `delta_version`)."""
    info = version.tier_tables[tier]
    table = DeltaTable(
        info["location"],
        version=delta_version if delta_version is not None else info["delta_version"],
    )
    return table.to_pyarrow_table()
