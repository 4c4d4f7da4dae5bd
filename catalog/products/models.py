"""Catalog entities: domains (facilities or clinical domains), data products and their versions."""

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, NotRequired, Required
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import Relationship, SQLModel
from typing_extensions import TypedDict

from catalog.kernel.db import UtcDateTime
from catalog.products.arrow_types import ArrowTypeError, canonical_type_name
from catalog.products.semver import SemVer
from catalog.sqlonfhir.views import ViewDefinitionError, compile_view

SLUG_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
COLUMN_PATTERN = r"^[a-z_][a-z0-9_]*$"
TAG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# `product.column`: a column of another product of the same domain.
REFERENCE_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\.[a-z_][a-z0-9_]*$"
RESOURCE_TYPE_PATTERN = r"^[A-Z][A-Za-z]{1,63}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

Slug = Annotated[str, Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=TAG_PATTERN)]
ResourceType = Annotated[str, Field(pattern=RESOURCE_TYPE_PATTERN)]


def _check_semver(value: str) -> str:
    SemVer.parse(value)
    return value


VersionText = Annotated[str, Field(max_length=32), AfterValidator(_check_semver)]


def _as_utc(value: datetime) -> datetime:
    """A client's instant in UTC (naive means UTC, as in the CLI).

    Converting here makes an instant that UTC cannot hold (year 1 or 9999 with an offset) a
    field error instead of an OverflowError when it is stored or compared.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


UtcInstant = Annotated[datetime, AfterValidator(_as_utc)]


class DomainKind(StrEnum):
    """A facility publishes its own data; a clinical domain spans facilities (labs, pharmacy)."""

    FACILITY = "facility"
    CLINICAL_DOMAIN = "clinical-domain"


class ProductStatus(StrEnum):
    """Lifecycle of a data product."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


class VersionStatus(StrEnum):
    """Lifecycle of one product version; only `published` versions are ever shared."""

    DRAFT = "draft"
    PUBLISHED = "published"
    QUARANTINED = "quarantined"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


class Tier(StrEnum):
    """Access tiers, from least to most identifying."""

    DEIDENTIFIED = "deidentified"
    LIMITED = "limited"
    FULL = "full"


class CodeSystem(StrEnum):
    """Code systems whose codes can be checked structurally."""

    LOINC = "loinc"
    ICD10CM = "icd-10-cm"
    SNOMED = "snomed-ct"


class Classification(StrEnum):
    """Privacy classification of a column; tier derivation is driven by it."""

    DIRECT_IDENTIFIER = "direct_identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    DATE = "date"
    ZIP = "zip"
    AGE = "age"
    FREE_TEXT = "free_text"
    CLINICAL = "clinical"
    NONE = "none"


# --- value objects stored as JSON on a version -------------------------------------------------


# Tier derivation transforms these classifications, so their values must have these types.
_CLASSIFICATION_TYPES: dict[Classification, tuple[tuple[str, ...], str]] = {
    Classification.DATE: (("date", "timestamp", "string"), "a date, timestamp or string"),
    Classification.ZIP: (("string", "large_string"), "a string"),
    Classification.AGE: (("int", "uint"), "an integer"),
}


class FhirType(StrEnum):
    """FHIR primitive types a column's values can be checked against (FHIR R4 definitions)."""

    DATE = "date"
    DATETIME = "dateTime"
    INSTANT = "instant"
    TIME = "time"
    DECIMAL = "decimal"
    INTEGER = "integer"
    POSITIVE_INT = "positiveInt"
    UNSIGNED_INT = "unsignedInt"
    BOOLEAN = "boolean"
    CODE = "code"
    ID = "id"
    STRING = "string"
    URI = "uri"


_TEMPORAL = ("date", "timestamp", "string")
_FHIR_TYPE_FAMILIES: dict[FhirType, tuple[str, ...]] = {
    FhirType.DATE: _TEMPORAL,
    FhirType.DATETIME: _TEMPORAL,
    FhirType.INSTANT: ("timestamp", "string"),
    FhirType.TIME: ("time", "string"),
    FhirType.DECIMAL: ("decimal", "double", "float", "string"),
    FhirType.INTEGER: ("int", "uint", "string"),
    FhirType.POSITIVE_INT: ("int", "uint", "string"),
    FhirType.UNSIGNED_INT: ("int", "uint", "string"),
    FhirType.BOOLEAN: ("bool", "string"),
    FhirType.CODE: ("string", "large_string"),
    FhirType.ID: ("string", "large_string"),
    FhirType.STRING: ("string", "large_string"),
    FhirType.URI: ("string", "large_string"),
}


class LegacyDateFormat(StrEnum):
    """Non-FHIR date shapes an HL7-era source may declare (`legacy_date_formats`)."""

    COMPACT = "YYYYMMDD"
    SLASH_ISO = "YYYY/MM/DD"
    US = "MM/DD/YYYY"
    DAY_MONTH_NAME = "DD-Mon-YYYY"
    MONTH_NAME = "Month D, YYYY"
    HL7_DTM = "YYYYMMDDHHMMSS"
    US_DATETIME = "MM/DD/YYYY HH:MM"
    NAIVE_DATETIME = "YYYY-MM-DD HH:MM:SS"


# Legacy shapes with a time of day: their clock time is read in the declared legacy_time_zone.
LEGACY_WITH_TIME = frozenset(
    {LegacyDateFormat.HL7_DTM, LegacyDateFormat.US_DATETIME, LegacyDateFormat.NAIVE_DATETIME}
)
PRECISION_SUFFIX = "_precision"


class ColumnSpec(BaseModel):
    """One output column of a product version."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=COLUMN_PATTERN)
    type: str = Field(max_length=200, description="Arrow type, e.g. string, int64, date32.")
    nullable: bool = True
    classification: Classification
    description: str = Field(default="", max_length=4000)
    surrogate: str | None = Field(
        default=None,
        pattern=RESOURCE_TYPE_PATTERN,
        description="FHIR resource type whose identity this column holds (Patient, Encounter). "
        "In the limited and deidentified tiers its values become random surrogates, the same "
        "in every product of the tier, so rows still join.",
    )
    code_system: CodeSystem | None = Field(
        default=None, description="Values must be valid codes of this system, else quarantined."
    )
    allowed_values: list[str] | None = Field(
        default=None, max_length=10000, description="Value set; other values are quarantined."
    )
    fhir_type: FhirType | None = Field(
        default=None,
        description="FHIR primitive type the values must conform to. Default: date for date "
        "columns (a dateTime gives its calendar date), dateTime for timestamp columns, time for "
        "time columns, dateTime for string columns classified date (the FHIR string is kept).",
    )
    references: str | None = Field(
        default=None,
        max_length=200,
        description="`product.column` of another product of the same domain whose values this "
        "column's non-null values must match (observations.patient_id -> patients.patient_id). "
        "Each publish measures the orphan rate against the referenced product's latest "
        "published version (full tier: source ids, never surrogates), bounded by the SLA's "
        "max_orphan_percent.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if self.surrogate and self.classification != Classification.DIRECT_IDENTIFIER:
            raise ValueError("surrogate is only meaningful on direct_identifier columns")
        if (
            self.classification == Classification.DATE
            and self.fhir_type is not None
            and self.fhir_type not in (FhirType.DATE, FhirType.DATETIME, FhirType.INSTANT)
        ):
            raise ValueError("a date column's fhir_type must be date, dateTime or instant")
        if self.fhir_type is not None:
            family = self.type.removeprefix("list<item: ").removesuffix(">")
            allowed = _FHIR_TYPE_FAMILIES[self.fhir_type]
            if not family.startswith(allowed):
                raise ValueError(
                    f"fhir_type {self.fhir_type} needs a column of type "
                    f"{' or '.join(allowed)}, not {self.type}"
                )
        expected = _CLASSIFICATION_TYPES.get(self.classification)
        if expected is not None and not self.type.startswith(expected[0]):
            raise ValueError(
                f"a {self.classification} column must have {expected[1]} type, not {self.type}"
            )
        if (self.code_system or self.allowed_values) and not self.type.endswith("string"):
            raise ValueError("code_system and allowed_values apply to string columns")
        if self.references and self.type.startswith(("list", "struct", "map")):
            raise ValueError("references applies to scalar columns, not " + self.type)
        return self

    @field_validator("references")
    @classmethod
    def _reference_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(REFERENCE_PATTERN, value):
            raise ValueError(
                f"expected product.column (a column of another product of the same domain, "
                f"e.g. patients.patient_id), got {value!r}"
            )
        return value

    @field_validator("type")
    @classmethod
    def _canonical_type(cls, value: str) -> str:
        try:
            return canonical_type_name(value)
        except ArrowTypeError as exc:
            raise ValueError(str(exc)) from None


_COMPLETENESS = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*>=\s*(\d{1,3}(?:\.\d+)?)\s*%\s*$")
_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_DURATION_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int:
    """Seconds in a duration such as `30m`, `4h`, `2d`, `1w`."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit m, h, d or w")
    return int(m.group(1)) * _DURATION_SECONDS[m.group(2)]


class CompletenessRule(BaseModel):
    """`column >= N%`: the share of non-null values a version must reach."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(pattern=COLUMN_PATTERN)
    min_percent: float = Field(ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _COMPLETENESS.fullmatch(value)
            if m is None:
                raise ValueError(
                    f"expected 'column >= N%' (e.g. 'lactate_result >= 98%'), got {value!r}"
                )
            return {"column": m.group(1), "min_percent": float(m.group(2))}
        return value


class Sla(BaseModel):
    """Service levels a version promises: freshness, completeness, availability."""

    model_config = ConfigDict(extra="forbid")

    freshness: str | None = Field(
        default=None, description="Newest clinical timestamp no older than this (30m, 4h, 2d, 1w)."
    )
    completeness: list[CompletenessRule] = Field(default_factory=list)
    freshness_column: str | None = Field(
        default=None,
        pattern=COLUMN_PATTERN,
        description="Clinical timestamp column whose newest value the freshness SLA checks.",
    )
    availability_percent: float | None = Field(default=None, gt=0, le=100)
    max_quarantined_percent: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="A version whose quarantined input records exceed this share is quarantined "
        "(exact duplicate lines are not counted: nothing was lost).",
    )
    max_findings_percent: float = Field(
        default=5.0,
        ge=0,
        le=100,
        description="A version whose input records with findings (non-conforming values made "
        "null, the row kept) exceed this share is quarantined.",
    )
    max_orphan_percent: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="A version in which more than this share of a referencing column's non-null "
        "values match no row of the referenced product (`references`) is quarantined.",
    )
    max_duplicate_percent: float = Field(
        default=100.0,
        ge=0,
        le=100,
        description="A version whose exact duplicate lines exceed this share of the input "
        "records is quarantined.",
    )

    @field_validator("freshness")
    @classmethod
    def _valid_duration(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _freshness_needs_a_column(self) -> "Sla":
        if self.freshness and not self.freshness_column:
            raise ValueError("freshness needs freshness_column: the clinical timestamp it checks")
        return self

    @field_validator("availability_percent", mode="before")
    @classmethod
    def _percent_text(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            return value.strip()[:-1]
        return value


class VersionSpec(BaseModel):
    """What a publisher declares for one version (API body and products file entry)."""

    model_config = ConfigDict(extra="forbid")

    version: VersionText
    columns: list[ColumnSpec] = Field(min_length=1, max_length=2000)
    tiers: list[Tier] = Field(min_length=1)
    sla: Sla = Field(default_factory=Sla)
    changelog: str = Field(default="", max_length=20000)
    view: dict[str, Any] | None = Field(
        default=None,
        description="SQL-on-FHIR v2 ViewDefinition turning FHIR resources into the columns; "
        "needed to publish from FHIR NDJSON.",
    )
    legacy_date_formats: list[LegacyDateFormat] = Field(
        default_factory=list,
        max_length=len(LegacyDateFormat),
        description="Non-FHIR date shapes this source really writes (HL7-era feeds). Values in "
        "these shapes are converted and counted by format; without the opt-in they are findings.",
    )
    legacy_time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone in which the source writes legacy date-times without an "
        "offset; required by the formats with a time of day.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "VersionSpec":
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate column names: {', '.join(duplicates)}")
        clashes = [
            c.name + PRECISION_SUFFIX
            for c in self.columns
            if c.type.startswith(("date", "timestamp")) and c.name + PRECISION_SUFFIX in names
        ]
        if clashes:
            raise ValueError(
                f"{', '.join(clashes)}: the publisher adds these precision columns itself; "
                "rename the declared columns"
            )
        self._check_legacy()
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError("tiers must not repeat")
        unknown = [r.column for r in self.sla.completeness if r.column not in names]
        if unknown:
            raise ValueError(f"completeness rules name unknown columns: {', '.join(unknown)}")
        fresh = self.sla.freshness_column
        if fresh is not None:
            column = next((c for c in self.columns if c.name == fresh), None)
            if column is None or not column.type.startswith(("date", "timestamp")):
                raise ValueError(f"freshness_column {fresh!r} must name a date or timestamp column")
        if self.view is not None:
            self._check_view(names)
        return self

    def references(self) -> list[tuple[ColumnSpec, str, str]]:
        """(column, referenced product, referenced column) of every referencing column."""
        out = []
        for c in self.columns:
            if c.references:
                product, column = c.references.split(".", 1)
                out.append((c, product, column))
        return out

    def _check_legacy(self) -> None:
        if len(set(self.legacy_date_formats)) != len(self.legacy_date_formats):
            raise ValueError("legacy_date_formats must not repeat")
        timed = sorted(f.value for f in self.legacy_date_formats if f in LEGACY_WITH_TIME)
        if self.legacy_time_zone is None:
            if timed:
                raise ValueError(
                    f"legacy_date_formats {', '.join(timed)} carry a time of day: state the "
                    "source's legacy_time_zone (e.g. America/Chicago), it is never guessed"
                )
            return
        if not self.legacy_date_formats:
            raise ValueError("legacy_time_zone is only meaningful with legacy_date_formats")
        try:
            ZoneInfo(self.legacy_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.legacy_time_zone!r}") from None

    def _check_view(self, names: list[str]) -> None:
        try:
            compiled = compile_view(self.view or {})
        except ViewDefinitionError as exc:
            raise ValueError(f"view.{exc}") from None
        produced = list(compiled.column_names)
        missing = [n for n in names if n not in produced]
        extra = [n for n in produced if n not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"does not produce {', '.join(missing)}")
            if extra:
                parts.append(f"produces undeclared {', '.join(extra)}")
            raise ValueError(f"view {' and '.join(parts)}")


def legacy_column(spec: VersionSpec) -> dict[str, Any] | None:
    """How a version's legacy date opt-in is stored (None when it has none)."""
    if not spec.legacy_date_formats:
        return None
    return {
        "formats": [f.value for f in spec.legacy_date_formats],
        "time_zone": spec.legacy_time_zone,
    }


def legacy_fields(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The VersionSpec fields of a stored legacy date opt-in."""
    if not stored:
        return {}
    return {"legacy_date_formats": stored["formats"], "legacy_time_zone": stored.get("time_zone")}


# --- tables --------------------------------------------------------------------------------------


class Audited(SQLModel):
    """Who created and last changed a row, and when."""

    created_at: datetime = SQLField(sa_type=UtcDateTime)
    created_by: str = SQLField(max_length=200)
    updated_at: datetime = SQLField(sa_type=UtcDateTime)
    updated_by: str = SQLField(max_length=200)


class DomainBase(SQLModel):
    """Fields shared by the domain table and its API shapes."""

    name: Slug = SQLField(max_length=63, unique=True, index=True)
    kind: DomainKind = SQLField(sa_type=String(32))
    title: str = SQLField(min_length=1, max_length=200)
    owner_team: str = SQLField(min_length=1, max_length=200)
    contact_email: Email = SQLField(max_length=254)
    description: str = SQLField(default="", max_length=4000)


class DomainCreate(DomainBase):
    """Body of `POST /api/v1/domains`."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class Domain(DomainBase, Audited, table=True):
    """A facility (st-marys) or cross-facility clinical domain (labs) that owns products."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it."""
        return "domain", self.name

    id: int | None = SQLField(default=None, primary_key=True)
    products: list["DataProduct"] = Relationship(back_populates="domain")


class DomainRead(DomainBase):
    """A domain as the API returns it."""

    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class ProductTag(SQLModel, table=True):
    """A tag on a product; its own table so tag filters are indexed on every backend."""

    __tablename__ = "product_tag"

    product_id: int | None = SQLField(
        default=None, foreign_key="data_product.id", primary_key=True, ondelete="CASCADE"
    )
    tag: str = SQLField(max_length=40, primary_key=True, index=True)
    product: "DataProduct" = Relationship(back_populates="tag_rows")


class ProductFields(SQLModel):
    """Descriptive fields of a product, shared by create, read and the products file."""

    title: str = SQLField(min_length=1, max_length=200)
    description: str = SQLField(default="", max_length=8000)
    owner_team: str = SQLField(min_length=1, max_length=200)
    owner_email: Email = SQLField(max_length=254)


class ProductSpec(ProductFields):
    """What a publisher declares for a product (API body; versions come separately)."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    name: Slug
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    source_resources: list[ResourceType] = Field(min_length=1, max_length=50)

    @field_validator("tags", "source_resources")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("values must not repeat")
        return value


class DataProduct(ProductFields, Audited, table=True):
    """A governed, versioned table derived from FHIR, owned by one domain."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it: `domain/name` (loads its domain)."""
        return "product", f"{self.domain.name}/{self.name}"

    __tablename__ = "data_product"
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_data_product_domain_name"),)

    id: int | None = SQLField(default=None, primary_key=True)
    domain_id: int | None = SQLField(
        default=None, foreign_key="domain.id", index=True, nullable=False
    )
    name: str = SQLField(max_length=63)
    source_resources: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    status: ProductStatus = SQLField(default=ProductStatus.ACTIVE, sa_type=String(32), index=True)
    status_reason: str | None = SQLField(default=None, max_length=4000)
    status_changed_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    status_changed_by: str | None = SQLField(default=None, max_length=200)
    # Lower-cased name, title, description, tags, domain and resource types for `q` search.
    search_text: str = SQLField(default="", max_length=20000)

    domain: Domain = Relationship(back_populates="products")
    tag_rows: list[ProductTag] = Relationship(
        back_populates="product", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )
    versions: list["ProductVersion"] = Relationship(back_populates="product")

    @property
    def tags(self) -> list[str]:
        """Tags, sorted."""
        return sorted(t.tag for t in self.tag_rows)


class VersionTier(SQLModel, table=True):
    """A tier offered by a version; its own table so `tier` filters are indexed."""

    __tablename__ = "product_version_tier"

    version_id: int | None = SQLField(
        default=None, foreign_key="product_version.id", primary_key=True, ondelete="CASCADE"
    )
    tier: Tier = SQLField(sa_type=String(32), primary_key=True, index=True)
    version: "ProductVersion" = Relationship(back_populates="tier_rows")


# --- the JSON columns of a version, typed (stored and served as these JSON objects) ------------


class TierTable(TypedDict):
    """One tier of a published version: its Delta table, the table version written, its
    columns."""

    location: str
    delta_version: int
    columns: list[str]


class CheckResult(TypedDict):
    """One contract check as stored: what was measured against what was promised."""

    name: str
    passed: bool
    measured: NotRequired[Any]
    threshold: NotRequired[Any]
    detail: NotRequired[str]
    facts: NotRequired[dict[str, Any]]  # further measurements, when any


class VersionCounts(TypedDict, total=False):
    """What a publish counted (every input record ends in rows, excluded or quarantined)."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    input_records: int
    records_with_rows: int
    excluded_by_view: int
    quarantined: int
    rows: int
    quarantined_by_rule: dict[str, int]
    duplicates: int
    records_with_findings: int
    findings: int
    findings_by_rule: dict[str, int]
    legacy_conversions: dict[str, int]


class RawFileRef(TypedDict):
    """A landed source file as a version's lineage names it."""

    name: str
    sha256: str
    bytes: int
    resource_type: str | None


class Lineage(TypedDict, total=False):
    """Where a version's data came from."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    source_kind: Required[str]
    raw_files: list[RawFileRef]
    ignored_files: list[str]
    view_sha256: str | None
    reconverted_from: str


class ProductVersion(Audited, table=True):
    """One semantic version of a product: schema, SLA, tiers, and the Delta data behind it."""

    @property
    def audit_subject(self) -> tuple[str, str]:
        """How audit entries name it: `domain/name@version` (loads its product and domain)."""
        return "version", f"{self.product.domain.name}/{self.product.name}@{self.version}"

    __tablename__ = "product_version"
    __table_args__ = (
        UniqueConstraint("product_id", "version", name="uq_product_version_product_version"),
        Index("ix_product_version_order", "product_id", "major", "minor", "patch"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    product_id: int | None = SQLField(
        default=None, foreign_key="data_product.id", index=True, nullable=False
    )
    version: str = SQLField(max_length=32)
    major: int
    minor: int
    patch: int
    status: VersionStatus = SQLField(default=VersionStatus.DRAFT, sa_type=String(32), index=True)
    columns: list[dict[str, Any]] = SQLField(sa_column=Column(JSON, nullable=False))
    sla: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    changelog: str = SQLField(default="", max_length=20000)
    view: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    # {"formats": [...], "time_zone": ...}: the legacy date shapes the source declared, if any.
    legacy_dates: dict[str, Any] | None = SQLField(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    delta_location: str | None = SQLField(default=None, max_length=2000)
    # The tier tables once published.
    tier_tables: dict[str, TierTable] | None = SQLField(default=None, sa_column=Column(JSON))
    extracted_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    # Where the data came from: raw file hashes, the view's hash, the version reconverted from.
    lineage: Lineage | None = SQLField(default=None, sa_column=Column(JSON))
    # Contract checks with measured values, and input/row/quarantine counts.
    checks: list[CheckResult] | None = SQLField(default=None, sa_column=Column(JSON))
    counts: VersionCounts | None = SQLField(default=None, sa_column=Column(JSON))
    status_reason: str | None = SQLField(default=None, max_length=4000)
    status_changed_at: datetime | None = SQLField(default=None, sa_type=UtcDateTime)
    status_changed_by: str | None = SQLField(default=None, max_length=200)
    # A deprecated version is served until then (the sharing read path hides it from that instant).
    served_until: datetime | None = SQLField(default=None, sa_type=UtcDateTime)

    product: DataProduct = Relationship(back_populates="versions")
    tier_rows: list[VersionTier] = Relationship(
        back_populates="version", sa_relationship_kwargs={"cascade": "all, delete-orphan"}
    )

    @property
    def semver(self) -> SemVer:
        """The parsed version."""
        return SemVer(self.major, self.minor, self.patch)

    @property
    def tiers(self) -> list[Tier]:
        """Tiers offered, least identifying first."""
        order = list(Tier)
        return sorted((t.tier for t in self.tier_rows), key=order.index)

    def spec(self) -> VersionSpec:
        """The declared part of this version, as a publisher would write it."""
        return VersionSpec.model_validate(
            {
                "version": self.version,
                "columns": self.columns,
                "tiers": self.tiers,
                "sla": self.sla,
                "changelog": self.changelog,
                "view": self.view,
                **legacy_fields(self.legacy_dates),
            }
        )


# --- API read shapes -----------------------------------------------------------------------------


class LifecycleChange(BaseModel):
    """Body of deprecate / retire: the reason is required and recorded."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=4000)
    served_until: UtcInstant | None = Field(
        default=None,
        description="Deprecation only: served until then, a future instant (default: the notice "
        "period); from then on the sharing protocol no longer serves the version.",
    )


class VersionRead(BaseModel):
    """A version with its schema, SLA and lifecycle, as the API returns it."""

    domain: str
    product: str
    version: str
    status: VersionStatus
    columns: list[ColumnSpec]
    tiers: list[Tier]
    sla: Sla
    changelog: str
    view: dict[str, Any] | None
    legacy_date_formats: list[LegacyDateFormat] = Field(default_factory=list)
    legacy_time_zone: str | None = None
    delta_location: str | None
    tier_tables: dict[str, TierTable] | None
    extracted_at: datetime | None
    lineage: Lineage | None
    checks: list[CheckResult] | None
    counts: VersionCounts | None
    status_reason: str | None
    status_changed_at: datetime | None
    status_changed_by: str | None
    served_until: datetime | None = None
    created_at: datetime
    created_by: str


class LifecycleOutcome(BaseModel):
    """A version after deprecate / retire, and the grants whose consumers were told."""

    version: "VersionRead"
    served_until: datetime
    affected_grants: list[int]


class VersionSummary(BaseModel):
    """A version in a product's version list."""

    version: str
    status: VersionStatus
    tiers: list[Tier]
    created_at: datetime


class ProductRead(BaseModel):
    """A product as listed and searched."""

    domain: str
    name: str
    title: str
    description: str
    tags: list[str]
    owner_team: str
    owner_email: str
    source_resources: list[str]
    status: ProductStatus
    status_reason: str | None
    latest_version: str | None = Field(description="Highest version that is not retired.")
    tiers: list[Tier] = Field(description="Tiers offered by any version that is not retired.")
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class ProductDetail(ProductRead):
    """A product with all its versions."""

    status_changed_at: datetime | None
    status_changed_by: str | None
    versions: list[VersionSummary]


class ProductPage(BaseModel):
    """One page of a product listing; pass `next_cursor` back as `cursor` for the next."""

    items: list[ProductRead]
    next_cursor: str | None
