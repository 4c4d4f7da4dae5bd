"""Deterministic synthetic FHIR R4 Bulk Data export of the example estate, dirt included.

The publishing pipeline, its ViewDefinitions, the privacy tiers and the SLA checks all need
realistic input that is safe to share: no real patient may ever appear.  :func:`generate_export`
writes one NDJSON file per resource type per facility folder, as a Bulk Data ``$export`` would,
and deliberately plants the dirt real feeds carry -- the same person registered at two facilities
with slightly different demographics, restricted ZIP3 areas and ZIP+4 codes, patients aged 90+,
the legacy facility's mixed date formats and local codes, duplicate messages, a wrongly typed
resource and an export cut off mid-line -- so each of those code paths has something to bite on.

Everything is a pure function of ``(patients, seed, as_of)``: one ``random.Random`` per phase
(each seeded from the root seed, so changing one phase never reshuffles another), one seeded
``Faker`` for names and contact details, no wall clock, and every file sorted deterministically.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from faker import Faker

__all__ = [
    "AGED_90_PLUS_RATE",
    "AGE_EDGE_RATE",
    "CONDITION_DUPLICATE_RATE",
    "CONDITION_WRONG_TYPE_RATE",
    "FACILITIES",
    "MISSING_ADDRESS_RATE",
    "NICKNAMES",
    "RESTRICTED_ZIP3",
    "RESTRICTED_ZIP3_RATE",
    "SHARED_RATE",
    "ZIP_PLUS4_RATE",
    "SynthReport",
    "generate_export",
]

Resource = dict[str, Any]

FACILITIES: Final = ("st-marys", "riverside", "northgate")
_HOME_WEIGHTS: Final = (45, 35, 20)
_MRN_PREFIX: Final = {"st-marys": "SM", "riverside": "RG", "northgate": "NG"}
_ENCOUNTER_FACILITIES: Final = ("st-marys", "riverside")

# Dirt quotas are exact (``round(patients * rate)`` people, chosen at random) rather than
# per-person coin flips, so even a small export is guaranteed to contain every kind of dirt.
SHARED_RATE: Final = 0.15
AGED_90_PLUS_RATE: Final = 0.03
AGE_EDGE_RATE: Final = 0.006  # turning 90 on as_of's date, or the day after (still 89)
RESTRICTED_ZIP3_RATE: Final = 0.03
ZIP_PLUS4_RATE: Final = 0.05
MISSING_ADDRESS_RATE: Final = 0.03
DECEASED_RATE: Final = 0.02
# Northgate Condition file: ``max(1, round(n * rate))`` of its n complete resources.
CONDITION_DUPLICATE_RATE: Final = 0.02
CONDITION_WRONG_TYPE_RATE: Final = 0.01

# ZIP3 areas with 20,000 people or fewer: HIPAA Safe Harbor requires them to become 000.
RESTRICTED_ZIP3: Final = {
    "036": "NH",
    "059": "MT",
    "102": "NY",
    "203": "DC",
    "556": "MN",
    "692": "NE",
    "821": "WY",
    "878": "NM",
    "893": "NV",
}

_RECENT: Final = timedelta(hours=2)
_HISTORY_DAYS: Final = 730
_RECENT_ENCOUNTER_RATE: Final = 0.02  # registrations whose newest encounter is in the last 2h
_RECENT_LAB_RATE: Final = 0.01

_V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_SNOMED: Final = "http://snomed.info/sct"
_LOINC: Final = "http://loinc.org"
_UCUM: Final = "http://unitsofmeasure.org"
_ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
_NORTHGATE_LOCAL: Final = "urn:oid:2.16.840.1.113883.3.9999.northgate"
_LABS_LOCAL: Final = "urn:mesh:labs:local"
_US_SSN: Final = "http://hl7.org/fhir/sid/us-ssn"
_US_CORE_RACE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_OMB_RACE: Final = "urn:oid:2.16.840.1.113883.6.238"
_TRIAGE_URL: Final = "https://fhir-mesh.dev/StructureDefinition/triage-acuity"
_FACILITY_URL: Final = "https://fhir-mesh.dev/StructureDefinition/facility"
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_DISPOSITION: Final = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
_CLINICAL_STATUS: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"

_GENDERS: Final = ("male", "female", "other", "unknown")
_GENDER_WEIGHTS: Final = (48.5, 48.5, 1.5, 1.5)
_RACES: Final = (
    ("2106-3", "White"),
    ("2054-5", "Black or African American"),
    ("2028-9", "Asian"),
    ("1002-5", "American Indian or Alaska Native"),
    ("2076-8", "Native Hawaiian or Other Pacific Islander"),
)
_RACE_WEIGHTS: Final = (62, 18, 12, 5, 3)

# The forms registration clerks actually type; a shared person's second record may use one.
NICKNAMES: Final = {
    "Alexander": "Alex",
    "Andrew": "Andy",
    "Anthony": "Tony",
    "Barbara": "Barb",
    "Benjamin": "Ben",
    "Catherine": "Cathy",
    "Charles": "Chuck",
    "Christopher": "Chris",
    "Cynthia": "Cindy",
    "Daniel": "Dan",
    "Deborah": "Debbie",
    "Edward": "Ed",
    "Elizabeth": "Liz",
    "Gregory": "Greg",
    "James": "Jim",
    "Jennifer": "Jen",
    "Jessica": "Jess",
    "John": "Jack",
    "Jonathan": "Jon",
    "Joseph": "Joe",
    "Joshua": "Josh",
    "Katherine": "Kate",
    "Kathleen": "Kathy",
    "Kenneth": "Ken",
    "Kimberly": "Kim",
    "Margaret": "Peggy",
    "Matthew": "Matt",
    "Michael": "Mike",
    "Nicholas": "Nick",
    "Pamela": "Pam",
    "Patricia": "Patty",
    "Rebecca": "Becky",
    "Richard": "Rick",
    "Robert": "Bob",
    "Samantha": "Sam",
    "Samuel": "Sam",
    "Stephanie": "Steph",
    "Steven": "Steve",
    "Susan": "Sue",
    "Thomas": "Tom",
    "Timothy": "Tim",
    "Victoria": "Vicky",
    "William": "Bill",
}

_MONTH_ABBR: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
)  # fmt: skip
_MONTH_NAME: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# Northgate's interface engine passes through whatever the source system sent.
_LEGACY_FORMATS: Final = (
    "iso",
    "compact",
    "us",
    "slashed",
    "dd-mon-yyyy",
    "iso-midnight",
    "long",
    "year-month",
    "year",
    "garbage",
)
_LEGACY_WEIGHTS: Final = (50, 8, 10, 5, 6, 6, 6, 4, 3, 2)

_ENCOUNTER_TYPES: Final = {
    "IMP": (("32485007", "Hospital admission"),),
    "AMB": (
        ("185349003", "Encounter for check up"),
        ("390906007", "Follow-up encounter"),
        ("11429006", "Consultation"),
    ),
    "EMER": (("50849002", "Emergency room admission"),),
}
_DURATION_MINUTES: Final = {"IMP": (1440, 14 * 1440), "AMB": (15, 90), "EMER": (45, 900)}
_DISPOSITIONS: Final = {
    "home": "Home",
    "snf": "Skilled nursing facility",
    "rehab": "Rehabilitation",
    "hosp": "Hospice",
    "other-hcf": "Other healthcare facility",
    "aadvice": "Left against advice",
    "exp": "Expired",
    "oth": "Other",
}
_DISPOSITION_WEIGHTS: Final = {
    "IMP": {"home": 68, "snf": 12, "rehab": 6, "hosp": 3, "other-hcf": 5, "aadvice": 2, "exp": 4},
    "AMB": {"home": 100},
    "EMER": {"home": 78, "other-hcf": 6, "aadvice": 5, "oth": 10, "exp": 1},
}
_REASONS: Final = {
    "EMER": (
        "chest pain since this morning, called by {rel} {name}",
        "fall at home, found on the floor by {rel} {name}",
        "SOB x{days} days, worse lying flat",
        "abd pain RLQ, nausea, no vomiting",
        "fever and productive cough, brought in by {rel} {name}",
        "laceration L hand, kitchen knife",
        "dizziness and palpitations, hx afib",
        "headache, worst of life per pt",
        "MVC, restrained driver, neck pain",
        "confused since yesterday per {rel} {name}",
    ),
    "AMB": (
        "annual physical",
        "follow-up for hypertension, BP log reviewed",
        "diabetes follow-up, A1c due",
        "post-op check R knee",
        "rash on both arms x{days} wks",
        "med refill, {rel} {name} asks about side effects",
    ),
    "IMP": (
        "admitted from ED for CHF exacerbation",
        "elective R hip replacement",
        "sepsis, suspected urinary source",
        "pneumonia, failed outpatient abx",
        "COPD exacerbation, on home O2",
        "GI bleed, transfused, {rel} {name} at bedside",
    ),
}
_RELATIVES: Final = ("daughter", "son", "wife", "husband", "neighbor", "mother", "friend")


@dataclass(frozen=True)
class _Measure:
    """A vital sign or lab test: codes, UCUM unit, sensible value range and reference range."""

    loinc: str
    display: str
    unit: str
    decimals: int
    low: float  # reference range
    high: float
    floor: float  # plausible extremes
    ceiling: float
    local: str = ""
    local_display: str = ""
    below_limit: str = ""


_VITALS: Final = (
    _Measure("8867-4", "Heart rate", "/min", 0, 60, 100, 35, 180),
    _Measure("8480-6", "Systolic blood pressure", "mm[Hg]", 0, 90, 140, 70, 230),
    _Measure("8462-4", "Diastolic blood pressure", "mm[Hg]", 0, 60, 90, 40, 130),
    _Measure("9279-1", "Respiratory rate", "/min", 0, 12, 20, 8, 40),
    _Measure("8310-5", "Body temperature", "Cel", 1, 36.1, 37.8, 34.5, 41.0),
    _Measure(
        "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 0, 94, 100, 75, 100
    ),
)
_LABS: Final = (
    _Measure(
        "2524-7", "Lactate [Moles/volume] in Serum or Plasma", "mmol/L", 1, 0.5, 2.0, 0.3, 9.0,
        "LAB-771", "LACTIC ACID", "<0.5",
    ),
    _Measure(
        "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 1, 12.0, 17.5, 5.5, 20.0,
        "LAB-102", "HGB", "<3.0",
    ),
    _Measure(
        "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 0, 70, 140, 35, 550,
        "LAB-210", "GLUCOSE RANDOM", "<20",
    ),
    _Measure(
        "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 2, 0.6, 1.3, 0.3, 9.0,
        "LAB-305", "CREAT", "<0.2",
    ),
    _Measure(
        "6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 1, 4.0, 11.0,
        0.8, 35.0, "LAB-118", "WBC", "<0.1",
    ),
    _Measure(
        "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 0, 135, 145, 118, 162,
        "LAB-401", "NA", "<100",
    ),
)  # fmt: skip
_LAB_WEIGHTS: Final = (20, 18, 18, 16, 16, 12)
_INTERPRETATION_DISPLAY: Final = {"H": "High", "L": "Low", "N": "Normal"}


@dataclass(frozen=True)
class _Diagnosis:
    """One problem-list concept as each of Northgate's three code systems spells it."""

    icd: tuple[str, str]
    snomed: tuple[str, str]
    local: tuple[str, str]
    chronic: bool


_DIAGNOSES: Final = (
    _Diagnosis(
        ("E11.9", "Type 2 diabetes mellitus without complications"),
        ("44054006", "Diabetes mellitus type 2"),
        ("DX-0042", "DM2 W/O COMPL"),
        True,
    ),
    _Diagnosis(
        ("I10", "Essential (primary) hypertension"),
        ("38341003", "Hypertensive disorder, systemic arterial"),
        ("DX-0017", "HTN"),
        True,
    ),
    _Diagnosis(
        ("J18.9", "Pneumonia, unspecified organism"),
        ("233604007", "Pneumonia"),
        ("DX-0310", "PNEUMONIA NOS"),
        False,
    ),
    _Diagnosis(
        ("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
        ("13645005", "Chronic obstructive lung disease"),
        ("DX-0121", "COPD"),
        True,
    ),
    _Diagnosis(
        ("I50.9", "Heart failure, unspecified"),
        ("84114007", "Heart failure"),
        ("DX-0088", "CHF"),
        True,
    ),
    _Diagnosis(
        ("E78.5", "Hyperlipidemia, unspecified"),
        ("55822004", "Hyperlipidemia"),
        ("DX-0055", "HLD"),
        True,
    ),
    _Diagnosis(
        ("F32.9", "Major depressive disorder, single episode, unspecified"),
        ("35489007", "Depressive disorder"),
        ("DX-0203", "DEPRESSION"),
        True,
    ),
    _Diagnosis(
        ("A41.9", "Sepsis, unspecified organism"),
        ("91302008", "Sepsis"),
        ("DX-0400", "SEPSIS"),
        False,
    ),
    _Diagnosis(
        ("N39.0", "Urinary tract infection, site not specified"),
        ("68566005", "Urinary tract infectious disease"),
        ("DX-0377", "UTI"),
        False,
    ),
    _Diagnosis(
        ("I48.91", "Unspecified atrial fibrillation"),
        ("49436004", "Atrial fibrillation"),
        ("DX-0099", "AFIB"),
        True,
    ),
    _Diagnosis(
        ("J45.909", "Unspecified asthma, uncomplicated"),
        ("195967001", "Asthma"),
        ("DX-0130", "ASTHMA"),
        True,
    ),
    _Diagnosis(
        ("N18.30", "Chronic kidney disease, stage 3 unspecified"),
        ("433144002", "Chronic kidney disease stage 3"),
        ("DX-0150", "CKD3"),
        True,
    ),
    _Diagnosis(
        ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
        ("235595009", "Gastroesophageal reflux disease"),
        ("DX-0260", "GERD"),
        True,
    ),
    _Diagnosis(
        ("E66.9", "Obesity, unspecified"),
        ("414916001", "Obesity"),
        ("DX-0071", "OBESITY"),
        True,
    ),
)
_CONDITION_NOTES: Final = (
    "pt reports poor adherence to meds",
    "dx per outside records",
    "f/u with PCP in 2 wks",
    "family hx: mother w/ same",
    "confirmed by Dr. {name}",
    "discussed with {rel} {name}, agrees with plan",
)


@dataclass(frozen=True)
class SynthReport:
    """What :func:`generate_export` wrote, for callers that load or check the export."""

    out: Path
    files: dict[str, int]  # relative path ("st-marys/Patient.ndjson") -> lines written
    people: int  # distinct synthetic people
    shared_people: int  # people registered at more than one facility


@dataclass
class _Person:
    """The true identity behind one or two facility registrations."""

    sex: str  # drives the name; what facilities record is ``gender``
    gender: str | None
    given: str
    middle: str | None
    family: str
    birth: date
    address: Resource | None
    phone: str
    email: str | None
    ssn: str
    race: tuple[str, str] | None
    deceased: bool
    registrations: list[_Registration] = field(default_factory=list)


@dataclass
class _Registration:
    """A person as one facility recorded them: its own Patient.id, MRN and maybe some typos."""

    person: _Person
    facility: str
    id: str
    mrn: str
    given: str
    birth: date
    phone: str
    home: bool


def generate_export(out: Path, *, patients: int, seed: int, as_of: datetime) -> SynthReport:
    """Write a synthetic Bulk Data export of ``patients`` people under ``out``.

    ``as_of`` is the extraction time: no clinical timestamp is later, and each facility's newest
    encounters and observations fall in the two hours before it.
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    generator = _Generator(patients=patients, seed=seed, as_of=as_of.astimezone(UTC))
    files = generator.run()
    counts: dict[str, int] = {}
    for relative, (lines, tail) in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{line}\n" for line in lines) + tail
        path.write_bytes(text.encode("utf-8"))
        counts[relative] = len(lines) + (1 if tail else 0)
    return SynthReport(
        out=out,
        files=counts,
        people=patients,
        shared_people=sum(1 for p in generator.people if len(p.registrations) > 1),
    )


class _Generator:
    """One export: each phase draws from its own random stream, in a fixed order."""

    def __init__(self, *, patients: int, seed: int, as_of: datetime) -> None:
        self.n = patients
        self.as_of = as_of
        self.today = as_of.date()
        root = random.Random(seed)  # noqa: S311 - synthetic data, not security
        phases = ("people", "registry", "patients", "encounters", "vitals", "conditions", "labs")
        self.rng = {phase: random.Random(root.getrandbits(64)) for phase in phases}  # noqa: S311
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.issued: set[str] = set()
        self.mrns: set[str] = set()
        self.people: list[_Person] = []
        self.at: dict[str, list[_Registration]] = {facility: [] for facility in FACILITIES}

    def run(self) -> dict[str, tuple[list[str], str]]:
        """Every file's complete lines plus its unterminated tail ("" for a clean file)."""
        self.people = self._people()
        self._register()
        patients = {facility: self._patients(facility) for facility in FACILITIES}
        encounters, vitals = self._encounters()
        conditions, tail = self._conditions()
        return {
            "st-marys/Patient.ndjson": (patients["st-marys"], ""),
            "st-marys/Encounter.ndjson": (encounters["st-marys"], ""),
            "riverside/Patient.ndjson": (patients["riverside"], ""),
            "riverside/Encounter.ndjson": (encounters["riverside"], ""),
            "riverside/Observation.ndjson": (vitals, ""),
            "northgate/Patient.ndjson": (patients["northgate"], ""),
            "northgate/Condition.ndjson": (conditions, tail),
            "labs/Observation.ndjson": (self._labs(), ""),
        }

    # ----------------------------------------------------------------------------------------
    # People and registrations

    def _people(self) -> list[_Person]:
        rng, fake, n = self.rng["people"], self.fake, self.n
        aged, edge = _partition(rng, n, (AGED_90_PLUS_RATE, AGE_EDGE_RATE))
        restricted, plus4, homeless = _partition(
            rng, n, (RESTRICTED_ZIP3_RATE, ZIP_PLUS4_RATE, MISSING_ADDRESS_RATE)
        )
        (deceased,) = _partition(rng, n, (DECEASED_RATE,))
        turns_90_today = set(sorted(edge)[::2])
        people = []
        for i in range(n):
            sex = rng.choices(_GENDERS, _GENDER_WEIGHTS)[0]
            gender = None if rng.random() < 0.03 else sex
            given, middle = self._given_names(sex, rng)
            family = fake.last_name()
            if i in edge:
                birth = _years_before(self.today + timedelta(days=i not in turns_90_today), 90)
            elif i in aged:
                birth = _random_date(
                    rng, _years_before(self.today, 106), _years_before(self.today, 91)
                )
            else:
                birth = self.today - timedelta(days=_age_days(rng))
            address = None
            if i not in homeless:
                kind = "restricted" if i in restricted else "plus4" if i in plus4 else "plain"
                address = self._address(kind, rng)
            email = None
            if rng.random() < 0.7:
                first, last = _letters(given), _letters(family)
                user = rng.choice((f"{first}.{last}", f"{first[:1]}{last}", f"{last}{first[:1]}"))
                email = f"{user}{rng.randint(1, 99)}@{fake.free_email_domain()}"
            race = rng.choices(_RACES, _RACE_WEIGHTS)[0] if rng.random() < 0.8 else None
            people.append(
                _Person(
                    sex=sex,
                    gender=gender,
                    given=given,
                    middle=middle,
                    family=family,
                    birth=birth,
                    address=address,
                    phone=fake.phone_number(),
                    email=email,
                    ssn=fake.ssn(),
                    race=race,
                    deceased=i in deceased,
                )
            )
        return people

    def _given_names(self, sex: str, rng: random.Random) -> tuple[str, str | None]:
        """First name, and a middle name for about 40% of people."""
        fake = self.fake
        pick = {"male": fake.first_name_male, "female": fake.first_name_female}.get(
            sex, fake.first_name_nonbinary
        )
        first = pick()
        return first, (pick() if rng.random() < 0.4 else None)

    def _address(self, kind: str, rng: random.Random) -> Resource:
        """A home address; ``kind`` is plain (5-digit ZIP), plus4 or restricted (small ZIP3)."""
        fake = self.fake
        street, city = fake.street_address(), fake.city()
        if kind == "restricted":
            zip3 = rng.choice(sorted(RESTRICTED_ZIP3))
            state, postal = RESTRICTED_ZIP3[zip3], f"{zip3}{rng.randint(0, 99):02d}"
        else:
            state = fake.state_abbr(
                include_territories=False, include_freely_associated_states=False
            )
            postal = fake.postcode_in_state(state)
            while postal[:3] in RESTRICTED_ZIP3:  # keep the restricted count exact
                postal = fake.postcode_in_state(state)
            if kind == "plus4":
                postal = f"{postal}-{rng.randint(1, 9999):04d}"
        return {"use": "home", "line": [street], "city": city, "state": state, "postalCode": postal}

    def _register(self) -> None:
        """Give everyone a home facility and register some of them at a second one too."""
        rng = self.rng["registry"]
        (shared,) = _partition(rng, self.n, (SHARED_RATE,))
        for i, person in enumerate(self.people):
            home = rng.choices(FACILITIES, _HOME_WEIGHTS)[0]
            self._add(person, home, person.given, person.birth, person.phone, home=True)
            if i not in shared:
                continue
            others = [f for f in FACILITIES if f != home]
            second = rng.choices(others, [_HOME_WEIGHTS[FACILITIES.index(f)] for f in others])[0]
            given, birth, phone = person.given, person.birth, person.phone
            variations = ["typo", "phone"]
            if person.given in NICKNAMES:
                variations.append("nickname")
            if birth.day <= 12 and birth.day != birth.month:
                variations.append("swapped-birth-date")
            variation = rng.choice(sorted(variations))
            if variation == "nickname":
                given = NICKNAMES[given]
            elif variation == "typo":
                given = _typo(given, rng)
            elif variation == "swapped-birth-date":
                birth = birth.replace(month=birth.day, day=birth.month)
            else:
                phone = self.fake.phone_number()
                while phone == person.phone:
                    phone = self.fake.phone_number()
            self._add(person, second, given, birth, phone, home=False)

    def _add(
        self, person: _Person, facility: str, given: str, birth: date, phone: str, *, home: bool
    ) -> None:
        rng = self.rng["registry"]
        mrn = f"{_MRN_PREFIX[facility]}-{rng.randrange(10**7):07d}"
        while mrn in self.mrns:
            mrn = f"{_MRN_PREFIX[facility]}-{rng.randrange(10**7):07d}"
        self.mrns.add(mrn)
        registration = _Registration(
            person, facility, self._new_id(rng), mrn, given, birth, phone, home
        )
        person.registrations.append(registration)
        self.at[facility].append(registration)

    def _new_id(self, rng: random.Random) -> str:
        """A random UUID v4, unique across the whole network."""
        while True:
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if value not in self.issued:
                self.issued.add(value)
                return value

    # ----------------------------------------------------------------------------------------
    # Patient

    def _patients(self, facility: str) -> list[str]:
        rng = self.rng["patients"]
        lines = []
        for reg in sorted(self.at[facility], key=lambda r: r.id):
            person = reg.person
            updated = self.as_of - timedelta(seconds=rng.randint(600, 400 * 86400))
            resource: Resource = {
                "resourceType": "Patient",
                "id": reg.id,
                "meta": {"lastUpdated": _instant(updated)},
            }
            if person.race is not None:
                code, display = person.race
                resource["extension"] = [
                    {
                        "url": _US_CORE_RACE,
                        "extension": [
                            {
                                "url": "ombCategory",
                                "valueCoding": {
                                    "system": _OMB_RACE,
                                    "code": code,
                                    "display": display,
                                },
                            },
                            {"url": "text", "valueString": display},
                        ],
                    }
                ]
            identifiers: list[Resource] = [
                {
                    "type": {"coding": [{"system": _V2_0203, "code": "MR"}]},
                    "system": f"urn:mesh:{facility}:mrn",
                    "value": reg.mrn,
                }
            ]
            if facility == "northgate" or rng.random() < 0.6:
                identifiers.append({"system": _US_SSN, "value": person.ssn})
            resource["identifier"] = identifiers
            name: Resource = {"use": "official"}
            if facility == "northgate":
                name["text"] = f"{person.family.upper()}, {reg.given}"
            name["family"] = person.family
            name["given"] = [reg.given] if person.middle is None else [reg.given, person.middle]
            resource["name"] = [name]
            telecom: list[Resource] = [{"system": "phone", "value": reg.phone, "use": "home"}]
            if person.email is not None:
                telecom.append({"system": "email", "value": person.email})
            resource["telecom"] = telecom
            if person.gender is not None:
                resource["gender"] = person.gender
            if facility == "northgate":
                resource["birthDate"] = _legacy_date(reg.birth, rng)
            elif rng.random() >= 0.01:
                resource["birthDate"] = reg.birth.isoformat()
            if person.deceased:
                resource["deceasedBoolean"] = True
            if person.address is not None:
                resource["address"] = [dict(person.address, line=list(person.address["line"]))]
            lines.append(_dumps(resource))
        return lines

    # ----------------------------------------------------------------------------------------
    # Encounter (st-marys, riverside) and vital-sign Observation (riverside)

    def _encounters(self) -> tuple[dict[str, list[str]], list[str]]:
        rng = self.rng["encounters"]
        files: dict[str, list[str]] = {}
        vitals: list[tuple[datetime, str, Resource]] = []
        for facility in _ENCOUNTER_FACILITIES:
            registrations = self.at[facility]
            living = [r for r in registrations if not r.person.deceased]
            quota = max(1, round(len(registrations) * _RECENT_ENCOUNTER_RATE))
            recent = {r.id for r in rng.sample(living, min(quota, len(living)))}
            rows: list[tuple[datetime, str, Resource]] = []
            for reg in registrations:
                # Minutes before as_of, oldest first; the dead stopped visiting a while ago.
                first = 30 * 1440 if reg.person.deceased else 121
                count = rng.randint(1, 4)
                ago = sorted(
                    (rng.randint(first, _HISTORY_DAYS * 1440) for _ in range(count)), reverse=True
                )
                if reg.id in recent:
                    ago[-1] = rng.randint(5, 115)
                for position, minutes in enumerate(ago):
                    dies = reg.person.deceased and reg.home and position == count - 1
                    start = (self.as_of - timedelta(minutes=minutes)).replace(
                        second=0, microsecond=0
                    )
                    row = self._encounter(reg, start, dies, rng)
                    rows.append(row)
                    if facility == "riverside":
                        vitals.extend(self._vitals(reg, row))
            files[facility] = [_dumps(resource) for _, _, resource in sorted(rows)]
        return files, [_dumps(resource) for _, _, resource in sorted(vitals)]

    def _encounter(
        self, reg: _Registration, start: datetime, dies: bool, rng: random.Random
    ) -> tuple[datetime, str, Resource]:
        riverside = reg.facility == "riverside"
        if riverside:
            klass = "EMER"
        elif dies:
            klass = "IMP"
        else:
            klass = rng.choices(("AMB", "EMER", "IMP"), (55, 25, 20))[0]
        encounter_id = self._new_id(rng)
        code, display = rng.choice(_ENCOUNTER_TYPES[klass])
        low, high = _DURATION_MINUTES[klass]
        end: datetime | None = start + timedelta(minutes=rng.randint(low, high))
        if end is not None and end > self.as_of:
            end = None
        offset = timedelta(hours=-5) if rng.random() < (0.15 if riverside else 0.3) else None
        resource: Resource = {"resourceType": "Encounter", "id": encounter_id}
        if riverside and rng.random() >= 0.03:
            acuity = rng.choices((1, 2, 3, 4, 5), (2, 20, 45, 25, 8))[0]
            resource["extension"] = [{"url": _TRIAGE_URL, "valueInteger": acuity}]
        resource["status"] = "finished" if end is not None else "in-progress"
        resource["class"] = {"system": _ACT_CODE, "code": klass}
        resource["type"] = [{"coding": [{"system": _SNOMED, "code": code, "display": display}]}]
        resource["subject"] = {"reference": f"Patient/{reg.id}"}
        period = {"start": _instant(start, offset)}
        if end is not None:
            period["end"] = _instant(end, offset)
        resource["period"] = period
        if riverside and end is not None:
            minutes = int((end - start).total_seconds() // 60)
            resource["length"] = {"value": minutes, "unit": "min", "system": _UCUM, "code": "min"}
        resource["reasonCode"] = [{"text": self._free_text(rng.choice(_REASONS[klass]), rng)}]
        if end is not None:
            if dies:
                disposition = "exp"
            else:
                weights = _DISPOSITION_WEIGHTS[klass]
                disposition = rng.choices(list(weights), list(weights.values()))[0]
            resource["hospitalization"] = {
                "dischargeDisposition": {
                    "coding": [
                        {
                            "system": _DISPOSITION,
                            "code": disposition,
                            "display": _DISPOSITIONS[disposition],
                        }
                    ]
                }
            }
        return start, encounter_id, resource

    def _vitals(
        self, reg: _Registration, encounter: tuple[datetime, str, Resource]
    ) -> Iterable[tuple[datetime, str, Resource]]:
        """A set of vitals at triage, and a repeat set for stays of four hours or more."""
        rng = self.rng["vitals"]
        start, encounter_id, resource = encounter
        end = _parse_instant(resource["period"]["end"]) if "end" in resource["period"] else None
        last = end if end is not None else self.as_of
        times = [start + timedelta(minutes=rng.randint(2, 15), seconds=rng.randint(0, 59))]
        if last - start >= timedelta(hours=4):
            span = int((last - start).total_seconds() // 60)
            times.append(start + timedelta(minutes=rng.randint(120, span - 10)))
        for moment in times:
            taken = min(moment, last)
            systolic = _VITALS[1].ceiling
            for measure in _VITALS:
                observation: Resource = {
                    "resourceType": "Observation",
                    "id": self._new_id(rng),
                    "status": "final",
                    "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "vital-signs"}]}],
                    "code": {
                        "coding": [
                            {"system": _LOINC, "code": measure.loinc, "display": measure.display}
                        ]
                    },
                    "subject": {"reference": f"Patient/{reg.id}"},
                    "encounter": {"reference": f"Encounter/{encounter_id}"},
                    "effectiveDateTime": _instant(taken),
                }
                value = _measured(measure, rng)
                if measure.loinc == "8480-6":
                    systolic = value
                elif measure.loinc == "8462-4":  # a diastolic above the systolic is a typo
                    value = min(value, systolic - 20)
                if rng.random() >= 0.01:
                    observation["valueQuantity"] = _quantity(value, measure)
                yield taken, observation["id"], observation

    # ----------------------------------------------------------------------------------------
    # Condition (northgate, legacy)

    def _conditions(self) -> tuple[list[str], str]:
        """The Condition file's complete lines (with duplicates) and its truncated last line."""
        rng = self.rng["conditions"]
        resources: list[Resource] = []
        for reg in self.at["northgate"]:
            for diagnosis in rng.sample(_DIAGNOSES, rng.randint(1, 4)):
                resources.append(self._condition(reg, diagnosis, rng))
        if not resources:
            return [], ""
        resources.sort(key=lambda r: str(r["id"]))
        *complete, cut = resources
        wrong = set(
            rng.sample(range(len(complete)), _dirt(len(complete), CONDITION_WRONG_TYPE_RATE))
        )
        for index in wrong:
            complete[index]["resourceType"] = "Observation"
        lines = [_dumps(resource) for resource in complete]
        clean = [i for i in range(len(lines)) if i not in wrong]
        duplicated = rng.sample(clean, min(len(clean), _dirt(len(lines), CONDITION_DUPLICATE_RATE)))
        after: dict[int, list[str]] = {}
        for source in sorted(duplicated):
            after.setdefault(rng.randint(source, len(lines) - 1), []).append(lines[source])
        out: list[str] = []
        for index, line in enumerate(lines):
            out.append(line)
            out.extend(after.get(index, []))
        text = _dumps(cut)
        return out, text[: rng.randint(len(text) // 3, 2 * len(text) // 3)]

    def _condition(self, reg: _Registration, diagnosis: _Diagnosis, rng: random.Random) -> Resource:
        system_name = rng.choices(("icd", "snomed", "local"), (55, 30, 15))[0]
        system, (code, display) = {
            "icd": (_ICD10CM, diagnosis.icd),
            "snomed": (_SNOMED, diagnosis.snomed),
            "local": (_NORTHGATE_LOCAL, diagnosis.local),
        }[system_name]
        if diagnosis.chronic:
            status = rng.choices(("active", "inactive", "resolved"), (85, 10, 5))[0]
        else:
            status = rng.choices(("resolved", "active", "inactive"), (75, 20, 5))[0]
        earliest = min(reg.birth, self.today)
        recorded = max(earliest, self.today - timedelta(days=rng.randint(1, 3650)))
        onset = max(earliest, recorded - timedelta(days=rng.randint(0, 3 * 365)))
        resource: Resource = {
            "resourceType": "Condition",
            "id": self._new_id(rng),
            "clinicalStatus": {"coding": [{"system": _CLINICAL_STATUS, "code": status}]},
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{reg.id}"},
        }
        if rng.random() >= 0.1:
            resource["onsetDateTime"] = _legacy_date(onset, rng)
        if rng.random() >= 0.05:
            resource["recordedDate"] = _legacy_date(recorded, rng)
        if rng.random() < 0.3:
            resource["note"] = [{"text": self._free_text(rng.choice(_CONDITION_NOTES), rng)}]
        return resource

    # ----------------------------------------------------------------------------------------
    # Laboratory Observation (labs)

    def _labs(self) -> list[str]:
        rng = self.rng["labs"]
        plans: list[tuple[_Registration, _Measure, int]] = []  # seconds before as_of
        for person in self.people:
            for _ in range(rng.randint(2, 6)):
                reg = rng.choice(person.registrations)
                measure = rng.choices(_LABS, _LAB_WEIGHTS)[0]
                plans.append((reg, measure, rng.randint(7201, _HISTORY_DAYS * 86400)))
        for facility in FACILITIES:
            ordered = [i for i, plan in enumerate(plans) if plan[0].facility == facility]
            living = [i for i in ordered if not plans[i][0].person.deceased]
            quota = min(len(living), max(1, round(len(ordered) * _RECENT_LAB_RATE)))
            for i in rng.sample(living, quota):
                reg, measure, _ = plans[i]
                plans[i] = (reg, measure, rng.randint(60, 7000))
        rows = [self._lab(reg, measure, seconds, rng) for reg, measure, seconds in plans]
        return [_dumps(resource) for _, _, resource in sorted(rows)]

    def _lab(
        self, reg: _Registration, measure: _Measure, seconds: int, rng: random.Random
    ) -> tuple[datetime, str, Resource]:
        collected = self.as_of - timedelta(seconds=seconds)
        local = rng.random() < 0.02
        coding = (
            {"system": _LABS_LOCAL, "code": measure.local, "display": measure.local_display}
            if local
            else {"system": _LOINC, "code": measure.loinc, "display": measure.display}
        )
        resource: Resource = {
            "resourceType": "Observation",
            "id": self._new_id(rng),
            "extension": [{"url": _FACILITY_URL, "valueString": reg.facility}],
            "status": rng.choices(("final", "corrected", "preliminary"), (90, 5, 5))[0],
            "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{reg.id}"},
            "effectiveDateTime": _instant(collected),
        }
        draw = rng.random()
        if draw >= 0.05:
            value = _measured(measure, rng)
            resource["valueQuantity"] = _quantity(value, measure)
            flag = "H" if value > measure.high else "L" if value < measure.low else "N"
            resource["interpretation"] = [
                {
                    "coding": [
                        {
                            "system": _INTERPRETATION,
                            "code": flag,
                            "display": _INTERPRETATION_DISPLAY[flag],
                        }
                    ]
                }
            ]
        elif draw >= 0.02:
            resource["valueString"] = rng.choice(
                (measure.below_limit, "hemolyzed, redraw", "specimen clotted")
            )
        return collected, resource["id"], resource

    # ----------------------------------------------------------------------------------------

    def _free_text(self, template: str, rng: random.Random) -> str:
        """Fill a free-text template; the names in it are the PHI de-identification must catch."""
        relative = rng.choice(_RELATIVES)
        name = ""
        if "Dr. {name}" in template:
            name = self.fake.last_name()
        elif "{name}" in template:
            name = {
                "daughter": self.fake.first_name_female,
                "wife": self.fake.first_name_female,
                "mother": self.fake.first_name_female,
                "son": self.fake.first_name_male,
                "husband": self.fake.first_name_male,
            }.get(relative, self.fake.first_name)()
        return template.format(rel=relative, name=name, days=rng.randint(2, 5))


# --------------------------------------------------------------------------------------------
# Helpers


def _partition(rng: random.Random, n: int, rates: Sequence[float]) -> list[set[int]]:
    """Disjoint random sets of ``round(n * rate)`` people each, one per rate."""
    order = rng.sample(range(n), n)
    sets, start = [], 0
    for rate in rates:
        size = round(n * rate)
        sets.append(set(order[start : start + size]))
        start += size
    return sets


def _dirt(n: int, rate: float) -> int:
    """How many of ``n`` lines get a kind of file dirt: at least one whenever there are lines."""
    return max(1, round(n * rate)) if n else 0


def _age_days(rng: random.Random) -> int:
    """Age in days below 89: children, adults and the elderly in a hospital-like mix."""
    bands = ((0, 6573), (6575, 75 * 365), (75 * 365 + 20, 89 * 365))
    low, high = rng.choices(bands, (15, 62, 23))[0]
    return rng.randint(low, high)


def _years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def _random_date(rng: random.Random, low: date, high: date) -> date:
    return low + timedelta(days=rng.randint(0, (high - low).days))


def _typo(name: str, rng: random.Random) -> str:
    """The name with one letter (never the first) replaced by a different one."""
    if len(name) < 2:
        return name + rng.choice("aeiou")
    position = rng.randrange(1, len(name))
    old = name[position].lower()
    new = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != old])
    return name[:position] + new + name[position + 1 :]


def _legacy_date(day: date, rng: random.Random) -> str:
    """``day`` in one of the formats Northgate's feeds mix, including partial and garbage."""
    kind = rng.choices(_LEGACY_FORMATS, _LEGACY_WEIGHTS)[0]
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    match kind:
        case "iso":
            return f"{y}-{m}-{d}"
        case "compact":
            return f"{y}{m}{d}"
        case "us":
            return f"{m}/{d}/{y}"
        case "slashed":
            return f"{y}/{m}/{d}"
        case "dd-mon-yyyy":
            return f"{d}-{_MONTH_ABBR[day.month - 1]}-{y}"
        case "iso-midnight":
            return f"{y}-{m}-{d}T00:00:00"
        case "long":
            return f"{_MONTH_NAME[day.month - 1]} {day.day}, {y}"
        case "year-month":
            return f"{y}-{m}"
        case "year":
            return y
        case _:
            return rng.choice(("00/00/0000", "unknown"))


def _instant(moment: datetime, offset: timedelta | None = None) -> str:
    """An ISO 8601 instant to the second: ``Z`` for UTC, otherwise the given fixed offset."""
    if offset is None:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.astimezone(timezone(offset)).isoformat(timespec="seconds")


def _parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _measured(measure: _Measure, rng: random.Random) -> float:
    """Mostly inside the reference range, with low and high results in the tails."""
    band = rng.random()
    if band < 0.15:
        value = rng.uniform(measure.floor, measure.low)
    elif band < 0.3:
        value = rng.uniform(measure.high, measure.ceiling)
    else:
        value = rng.uniform(measure.low, measure.high)
    return round(value, measure.decimals)


def _quantity(value: float, measure: _Measure) -> Resource:
    number: float | int = int(value) if measure.decimals == 0 else value
    return {"value": number, "unit": measure.unit, "system": _UCUM, "code": measure.unit}


def _dumps(resource: Resource) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)
