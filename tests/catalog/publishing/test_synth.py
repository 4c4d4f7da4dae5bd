"""The synthetic Bulk Data export: deterministic, referentially sound, and dirty on purpose."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from catalog.demo.synth import (
    AGE_EDGE_RATE,
    AGED_90_PLUS_RATE,
    CONDITION_DUPLICATE_RATE,
    CONDITION_WRONG_TYPE_RATE,
    FACILITIES,
    NICKNAMES,
    RESTRICTED_ZIP3,
    RESTRICTED_ZIP3_RATE,
    SHARED_RATE,
    ZIP_PLUS4_RATE,
    SynthReport,
    generate_export,
)

AS_OF = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PATIENTS = 500
SEED = 7
FILES = {
    "st-marys/Patient.ndjson": "Patient",
    "st-marys/Encounter.ndjson": "Encounter",
    "riverside/Patient.ndjson": "Patient",
    "riverside/Encounter.ndjson": "Encounter",
    "riverside/Observation.ndjson": "Observation",
    "northgate/Patient.ndjson": "Patient",
    "northgate/Condition.ndjson": "Condition",
    "labs/Observation.ndjson": "Observation",
}
CONDITIONS = "northgate/Condition.ndjson"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})")
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
LEGACY = [  # (kind, pattern); the first full match wins
    ("garbage", re.compile(r"00/00/0000|unknown")),
    ("iso", re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})")),
    ("iso-midnight", re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})T00:00:00")),
    ("compact", re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})")),
    ("us", re.compile(r"(?P<m>\d{2})/(?P<d>\d{2})/(?P<y>\d{4})")),
    ("slashed", re.compile(r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})")),
    ("dd-mon-yyyy", re.compile(r"(?P<d>\d{2})-(?P<mon>[A-Z][a-z]{2})-(?P<y>\d{4})")),
    ("long", re.compile(r"(?P<month>[A-Z][a-z]+) (?P<d>\d{1,2}), (?P<y>\d{4})")),
    ("year-month", re.compile(r"\d{4}-\d{2}")),
    ("year", re.compile(r"\d{4}")),
]


def legacy_date(text: str) -> tuple[str, date | None]:
    """Which of Northgate's formats ``text`` is in, and the full date it spells if it has one."""
    for kind, pattern in LEGACY:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        if "y" not in parts:
            return kind, None
        if "mon" in parts:
            month = [m[:3] for m in MONTHS].index(parts["mon"]) + 1
        elif "month" in parts:
            month = MONTHS.index(parts["month"]) + 1
        else:
            month = int(parts["m"])
        return kind, date(int(parts["y"]), month, int(parts["d"]))
    raise AssertionError(f"not one of Northgate's date formats: {text!r}")


def birth_date(facility: str, patient: dict[str, Any]) -> date | None:
    if "birthDate" not in patient:
        return None
    if facility == "northgate":
        return legacy_date(patient["birthDate"])[1]
    return date.fromisoformat(patient["birthDate"])


def age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def instant(text: str) -> datetime:
    assert INSTANT.fullmatch(text), text
    return datetime.fromisoformat(text)


@dataclass
class Export:
    report: SynthReport
    text: dict[str, str]
    resources: dict[str, list[dict[str, Any]]]  # every parseable line, duplicates included

    def patients(self, facility: str) -> list[dict[str, Any]]:
        return self.resources[f"{facility}/Patient.ndjson"]

    def patient_ids(self, facility: str) -> set[str]:
        return {p["id"] for p in self.patients(facility)}

    def conditions(self) -> list[dict[str, Any]]:
        return [r for r in self.resources[CONDITIONS] if r["resourceType"] == "Condition"]


def load(report: SynthReport) -> Export:
    text = {name: (report.out / name).read_text(encoding="utf-8") for name in FILES}
    resources = {}
    for name, content in text.items():
        lines = content.split("\n")
        complete = lines[:-1]  # "" after the final newline, or the truncated tail
        resources[name] = [json.loads(line) for line in complete]
    return Export(report, text, resources)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    out = tmp_path_factory.mktemp("export")
    return load(generate_export(out, patients=PATIENTS, seed=SEED, as_of=AS_OF))


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.ndjson"))}


# --------------------------------------------------------------------------------------------
# Determinism and layout


def test_same_inputs_give_byte_identical_output_and_another_seed_differs(tmp_path: Path) -> None:
    runs = {
        name: generate_export(tmp_path / name, patients=60, seed=seed, as_of=AS_OF)
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    }
    a, b, c = (snapshot(tmp_path / name) for name in "abc")
    assert a == b
    assert runs["a"].files == runs["b"].files
    assert set(a) == set(c) == set(FILES)
    assert all(a[name] != c[name] for name in a)


def test_report_describes_the_files_written(export: Export) -> None:
    report = export.report
    assert list(report.files) == list(FILES)
    for name, content in export.text.items():
        assert report.files[name] == content.count("\n") + (not content.endswith("\n"))
        assert "\r" not in content
    assert report.people == PATIENTS
    assert report.shared_people == round(PATIENTS * SHARED_RATE)
    registrations = sum(len(export.patients(f)) for f in FACILITIES)
    assert registrations == report.people + report.shared_people


def test_lines_are_compact_json_of_the_files_resource_type(export: Export) -> None:
    for name, expected in FILES.items():
        content = export.text[name]
        lines = content.split("\n")[:-1]
        for line, resource in zip(lines, export.resources[name], strict=True):
            assert line == json.dumps(resource, separators=(",", ":"), ensure_ascii=False)
        if name == CONDITIONS:
            continue
        assert content.endswith("\n")
        assert {r["resourceType"] for r in export.resources[name]} == {expected}
        ids = [r["id"] for r in export.resources[name]]
        assert len(ids) == len(set(ids))
        assert all(UUID4.fullmatch(i) for i in ids)


def test_condition_file_dirt_is_exactly_what_was_planted(export: Export) -> None:
    content = export.text[CONDITIONS]
    assert not content.endswith("\n")
    *complete, tail = content.split("\n")
    assert tail.startswith('{"resourceType":"Condition"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(tail)

    seen: set[str] = set()
    duplicates = 0
    for line in complete:
        if line in seen:
            duplicates += 1
        seen.add(line)
    types = Counter(json.loads(line)["resourceType"] for line in seen)
    assert set(types) == {"Condition", "Observation"}
    unique = len(seen)
    assert duplicates == max(1, round(unique * CONDITION_DUPLICATE_RATE))
    assert types["Observation"] == max(1, round(unique * CONDITION_WRONG_TYPE_RATE))
    assert len({json.loads(line)["id"] for line in seen}) == unique
    assert export.report.files[CONDITIONS] == unique + duplicates + 1


# --------------------------------------------------------------------------------------------
# References and identifiers


def test_patient_ids_are_unique_across_the_network(export: Export) -> None:
    ids = [p["id"] for f in FACILITIES for p in export.patients(f)]
    assert len(ids) == len(set(ids))
    mrns = [
        i["value"]
        for f in FACILITIES
        for p in export.patients(f)
        for i in p["identifier"]
        if "type" in i
    ]
    assert len(mrns) == len(set(mrns)) == len(ids)


def test_every_reference_resolves_at_its_facility(export: Export) -> None:
    def patient_of(resource: dict[str, Any]) -> str:
        reference = resource["subject"]["reference"]
        assert reference.startswith("Patient/")
        return str(reference.removeprefix("Patient/"))

    for facility in ("st-marys", "riverside"):
        known = export.patient_ids(facility)
        encounters = export.resources[f"{facility}/Encounter.ndjson"]
        assert {patient_of(e) for e in encounters} <= known
        # one to four encounters per registered patient
        per_patient = Counter(patient_of(e) for e in encounters)
        assert set(per_patient) == known
        assert set(per_patient.values()) <= {1, 2, 3, 4}

    encounter_patient = {
        e["id"]: patient_of(e) for e in export.resources["riverside/Encounter.ndjson"]
    }
    for vital in export.resources["riverside/Observation.ndjson"]:
        encounter = vital["encounter"]["reference"].removeprefix("Encounter/")
        assert encounter_patient[encounter] == patient_of(vital)

    assert {patient_of(c) for c in export.conditions()} <= export.patient_ids("northgate")

    labs = export.resources["labs/Observation.ndjson"]
    for lab in labs:
        (facility_extension,) = lab["extension"]
        assert facility_extension["url"] == "https://fhir-mesh.dev/StructureDefinition/facility"
        assert patient_of(lab) in export.patient_ids(facility_extension["valueString"])
    assert {lab["extension"][0]["valueString"] for lab in labs} == set(FACILITIES)


# --------------------------------------------------------------------------------------------
# Time


def test_newest_timestamps_fall_in_the_two_hours_before_as_of(export: Export) -> None:
    window = AS_OF - timedelta(hours=2)
    offsets: Counter[str] = Counter()
    for facility in ("st-marys", "riverside"):
        encounters = export.resources[f"{facility}/Encounter.ndjson"]
        starts = [instant(e["period"]["start"]) for e in encounters]
        for encounter in encounters:
            start = instant(encounter["period"]["start"])
            offsets[encounter["period"]["start"][19:]] += 1
            if encounter["status"] == "in-progress":
                assert "end" not in encounter["period"]
                assert "hospitalization" not in encounter
            else:
                assert encounter["status"] == "finished"
                end = instant(encounter["period"]["end"])
                assert start <= end <= AS_OF
                if facility == "riverside":
                    assert encounter["length"]["value"] == (end - start).total_seconds() // 60
        assert window <= max(starts) <= AS_OF
        assert min(starts) >= AS_OF - timedelta(days=731)
    assert set(offsets) == {"Z", "-05:00"}

    vitals = [
        instant(v["effectiveDateTime"]) for v in export.resources["riverside/Observation.ndjson"]
    ]
    assert window <= max(vitals) <= AS_OF

    newest: dict[str, datetime] = {}
    for lab in export.resources["labs/Observation.ndjson"]:
        facility = lab["extension"][0]["valueString"]
        taken = instant(lab["effectiveDateTime"])
        assert taken <= AS_OF
        newest[facility] = max(newest.get(facility, taken), taken)
    assert all(window <= moment for moment in newest.values())

    for facility in FACILITIES:
        for patient in export.patients(facility):
            assert instant(patient["meta"]["lastUpdated"]) <= AS_OF
            born = birth_date(facility, patient)
            assert born is None or born <= AS_OF.date()
    for condition in export.conditions():
        for key in ("onsetDateTime", "recordedDate"):
            if key in condition:
                day = legacy_date(condition[key])[1]
                assert day is None or day <= AS_OF.date()


# --------------------------------------------------------------------------------------------
# Shared people


def test_shared_people_differ_in_exactly_the_described_ways(export: Export) -> None:
    by_identity: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for facility in FACILITIES:
        for patient in export.patients(facility):
            if "address" in patient:
                key = (patient["name"][0]["family"], patient["address"][0]["line"][0])
                by_identity[key].append((facility, patient))
    pairs = [group for group in by_identity.values() if len(group) > 1]
    assert all(len(group) == 2 for group in pairs)
    shared = export.report.shared_people
    assert 0.9 * shared <= len(pairs) <= shared  # the rest have no address to link on

    def phone(patient: dict[str, Any]) -> str:
        return next(t["value"] for t in patient["telecom"] if t["system"] == "phone")

    def email(patient: dict[str, Any]) -> str | None:
        return next((t["value"] for t in patient["telecom"] if t["system"] == "email"), None)

    def ssn(patient: dict[str, Any]) -> str | None:
        return next((i["value"] for i in patient["identifier"] if "type" not in i), None)

    variations: Counter[str] = Counter()
    hidden = 0
    for (facility_a, a), (facility_b, b) in pairs:
        assert facility_a != facility_b
        assert a["id"] != b["id"]
        assert a.get("gender") == b.get("gender")
        assert a["address"] == b["address"]
        assert email(a) == email(b)
        assert a["name"][0]["given"][1:] == b["name"][0]["given"][1:]  # middle name
        if ssn(a) and ssn(b):
            assert ssn(a) == ssn(b)
        found = []
        given_a, given_b = a["name"][0]["given"][0], b["name"][0]["given"][0]
        if given_a != given_b:
            if given_b == NICKNAMES.get(given_a) or given_a == NICKNAMES.get(given_b):
                found.append("nickname")
            else:
                assert NICKNAMES.get(given_a) != given_b and NICKNAMES.get(given_b) != given_a
                assert len(given_a) == len(given_b)
                assert given_a[0] == given_b[0]
                assert sum(x != y for x, y in zip(given_a, given_b, strict=True)) == 1
                found.append("typo")
        if phone(a) != phone(b):
            found.append("phone")
        born_a, born_b = birth_date(facility_a, a), birth_date(facility_b, b)
        if born_a and born_b and born_a != born_b:
            assert (born_b.year, born_b.month, born_b.day) == (
                born_a.year,
                born_a.day,
                born_a.month,
            )
            found.append("swapped-birth-date")
        assert len(found) <= 1, found
        if not found:  # a swapped birth date that one side did not record in full
            hidden += 1
            assert born_a is None or born_b is None
        variations.update(found)
    assert set(variations) == {"nickname", "typo", "phone", "swapped-birth-date"}
    assert hidden <= len(pairs) * 0.1


# --------------------------------------------------------------------------------------------
# Demographic dirt


def test_restricted_zip3_zip_plus4_missing_address_and_the_very_old(export: Export) -> None:
    addresses: dict[tuple[str, str], str] = {}
    without_address = 0
    for facility in FACILITIES:
        for patient in export.patients(facility):
            if "address" not in patient:
                without_address += 1
                continue
            (address,) = patient["address"]
            assert address["use"] == "home"
            assert re.fullmatch(r"[A-Z]{2}", address["state"])
            assert re.fullmatch(r"\d{5}(-\d{4})?", address["postalCode"])
            addresses[(address["line"][0], address["postalCode"])] = address["state"]
    restricted = {k: s for k, s in addresses.items() if k[1][:3] in RESTRICTED_ZIP3}
    assert len(restricted) == round(PATIENTS * RESTRICTED_ZIP3_RATE)
    assert all(RESTRICTED_ZIP3[postal[:3]] == state for (_, postal), state in restricted.items())
    plus4 = [k for k in addresses if "-" in k[1]]
    assert len(plus4) == round(PATIENTS * ZIP_PLUS4_RATE)
    assert without_address > 0

    today, tomorrow = AS_OF.date(), AS_OF.date() + timedelta(days=1)
    ages: dict[str, int] = {}
    turning_90_today, turning_90_tomorrow = set(), set()
    for facility in FACILITIES:
        for patient in export.patients(facility):
            born = birth_date(facility, patient)
            if born is None:
                continue
            key = patient["name"][0]["family"] + patient["telecom"][0]["value"]
            ages[key] = age(born, today)
            if age(born, today) == 90 and (born.month, born.day) == (today.month, today.day):
                turning_90_today.add(key)
            if age(born, today) == 89 and age(born, tomorrow) == 90:
                turning_90_tomorrow.add(key)
    very_old = [a for a in ages.values() if a >= 90]
    assert len(very_old) >= 0.8 * round(PATIENTS * (AGED_90_PLUS_RATE + AGE_EDGE_RATE / 2))
    assert max(very_old) <= 106
    assert turning_90_today
    assert turning_90_tomorrow
    assert min(ages.values()) >= 0


def test_northgate_dates_mix_legacy_formats(export: Export) -> None:
    birth_kinds = Counter(legacy_date(p["birthDate"])[0] for p in export.patients("northgate"))
    assert 0.35 <= birth_kinds["iso"] / sum(birth_kinds.values()) <= 0.65
    condition_kinds = Counter(
        legacy_date(c[key])[0]
        for c in export.conditions()
        for key in ("onsetDateTime", "recordedDate")
        if key in c
    )
    assert set(birth_kinds + condition_kinds) == {kind for kind, _ in LEGACY}
    for facility in ("st-marys", "riverside"):
        births = [p.get("birthDate") for p in export.patients(facility)]
        assert all(b is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", b) for b in births)
        assert None in births  # ~1% missing
    conditions = export.conditions()
    assert any("onsetDateTime" not in c for c in conditions)
    assert any("recordedDate" not in c for c in conditions)


# --------------------------------------------------------------------------------------------
# Resource shapes the ViewDefinitions read


def test_patient_shapes(export: Export) -> None:
    prefixes = {"st-marys": "SM", "riverside": "RG", "northgate": "NG"}
    for facility in FACILITIES:
        patients = export.patients(facility)
        with_ssn = 0
        for patient in patients:
            mr = [i for i in patient["identifier"] if "type" in i]
            assert len(mr) == 1
            assert mr[0]["type"]["coding"][0] == {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                "code": "MR",
            }
            assert mr[0]["system"] == f"urn:mesh:{facility}:mrn"
            assert re.fullmatch(rf"{prefixes[facility]}-\d{{7}}", mr[0]["value"])
            ssns = [
                i
                for i in patient["identifier"]
                if i.get("system") == "http://hl7.org/fhir/sid/us-ssn"
            ]
            with_ssn += bool(ssns)
            (name,) = patient["name"]
            assert name["use"] == "official"
            assert 1 <= len(name["given"]) <= 2
            if facility == "northgate":
                assert name["text"] == f"{name['family'].upper()}, {name['given'][0]}"
            else:
                assert "text" not in name
            assert patient["telecom"][0]["system"] == "phone"
            assert patient["telecom"][0]["use"] == "home"
            assert patient.get("gender", "unknown") in {"male", "female", "other", "unknown"}
            assert patient.get("deceasedBoolean", True) is True
        if facility == "northgate":
            assert with_ssn == len(patients)
        else:
            assert 0.45 <= with_ssn / len(patients) <= 0.75
    everyone = [p for f in FACILITIES for p in export.patients(f)]
    assert any("gender" not in p for p in everyone)
    assert any(p.get("deceasedBoolean") for p in everyone)
    races = Counter(
        p["extension"][0]["extension"][0]["valueCoding"]["code"]
        for p in everyone
        if "extension" in p
    )
    assert len(races) >= 4
    assert 0.7 <= sum(races.values()) / len(everyone) <= 0.9
    emails = sum(any(t["system"] == "email" for t in p["telecom"]) for p in everyone)
    assert 0.6 <= emails / len(everyone) <= 0.8


def test_encounter_shapes(export: Export) -> None:
    classes = Counter()
    for facility in ("st-marys", "riverside"):
        for encounter in export.resources[f"{facility}/Encounter.ndjson"]:
            klass = encounter["class"]
            assert klass["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
            classes[facility, klass["code"]] += 1
            assert encounter["type"][0]["coding"][0]["system"] == "http://snomed.info/sct"
            assert encounter["reasonCode"][0]["text"]
            if encounter["status"] == "finished":
                disposition = encounter["hospitalization"]["dischargeDisposition"]["coding"][0]
                assert disposition["code"] in {
                    "home",
                    "snf",
                    "rehab",
                    "hosp",
                    "other-hcf",
                    "aadvice",
                    "exp",
                    "oth",
                }
    assert {code for facility, code in classes if facility == "st-marys"} == {"IMP", "AMB", "EMER"}
    assert {code for facility, code in classes if facility == "riverside"} == {"EMER"}

    riverside = export.resources["riverside/Encounter.ndjson"]
    acuity = [e.get("extension", [{}])[0].get("valueInteger") for e in riverside]
    assert {a for a in acuity if a is not None} == {1, 2, 3, 4, 5}
    assert 0 < acuity.count(None) <= 0.06 * len(riverside)
    assert all(
        e["extension"][0]["url"] == "https://fhir-mesh.dev/StructureDefinition/triage-acuity"
        for e in riverside
        if "extension" in e
    )
    assert any(e["status"] == "in-progress" for e in riverside)
    assert all("priority" not in e for e in riverside)
    finished = [e for e in riverside if e["status"] == "finished"]
    assert all(
        e["length"]["unit"] == "min" and e["length"]["system"] == "http://unitsofmeasure.org"
        for e in finished
    )


def test_observation_and_condition_shapes(export: Export) -> None:
    vitals = export.resources["riverside/Observation.ndjson"]
    assert {v["code"]["coding"][0]["code"] for v in vitals} == {
        "8867-4", "8480-6", "8462-4", "9279-1", "8310-5", "59408-5"
    }  # fmt: skip
    for vital in vitals:
        assert vital["status"] == "final"
        assert vital["category"][0]["coding"][0]["code"] == "vital-signs"
        assert vital["code"]["coding"][0]["system"] == "http://loinc.org"
        assert vital["code"]["coding"][0]["display"]
        quantity = vital.get("valueQuantity")
        if quantity is not None:
            assert quantity["system"] == "http://unitsofmeasure.org"
            assert quantity["unit"] == quantity["code"]
    missing = sum("valueQuantity" not in v for v in vitals)
    assert 0 < missing <= 0.02 * len(vitals)

    labs = export.resources["labs/Observation.ndjson"]
    systems = Counter(lab["code"]["coding"][0]["system"] for lab in labs)
    assert set(systems) == {"http://loinc.org", "urn:mesh:labs:local"}
    assert systems["urn:mesh:labs:local"] <= 0.04 * len(labs)
    assert {lab["code"]["coding"][0]["code"] for lab in labs if "loinc" in lab["code"]["coding"][0]["system"]} == {
        "2524-7", "718-7", "2345-7", "2160-0", "6690-2", "2951-2"
    }  # fmt: skip
    values = Counter(
        "quantity" if "valueQuantity" in lab else "string" if "valueString" in lab else "none"
        for lab in labs
    )
    assert set(values) == {"quantity", "string", "none"}
    assert values["quantity"] >= 0.9 * len(labs)
    for lab in labs:
        assert lab["category"][0]["coding"][0]["code"] == "laboratory"
        assert lab["status"] in {"final", "corrected", "preliminary"}
        if "valueQuantity" in lab:
            flag = lab["interpretation"][0]["coding"][0]
            assert flag["code"] in {"H", "L", "N"}
            assert (
                flag["system"]
                == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
            )
    assert 2 * PATIENTS <= len(labs) <= 6 * PATIENTS

    conditions = export.conditions()
    code_systems = Counter(c["code"]["coding"][0]["system"] for c in conditions)
    assert set(code_systems) == {
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://snomed.info/sct",
        "urn:oid:2.16.840.1.113883.3.9999.northgate",
    }
    assert all(
        re.fullmatch(r"DX-\d{4}", c["code"]["coding"][0]["code"])
        for c in conditions
        if c["code"]["coding"][0]["system"].endswith("northgate")
    )
    assert {c["clinicalStatus"]["coding"][0]["code"] for c in conditions} == {
        "active",
        "resolved",
        "inactive",
    }
    assert any("note" in c for c in conditions)


def test_rejects_naive_as_of_and_empty_exports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone"):
        generate_export(tmp_path, patients=10, seed=1, as_of=datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="at least 1"):
        generate_export(tmp_path, patients=0, seed=1, as_of=AS_OF)
