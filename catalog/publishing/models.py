"""Publishing records: quarantined input records and the publishing API shapes."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Index
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from catalog.products.models import UtcInstant


class RecordPointer(SQLModel):
    """Where an input record or value came from and what rule it broke.

    It points into immutable raw storage (file hash + line) instead of copying the payload, so
    the catalog database holds no clinical content beyond the detail.
    """

    id: int | None = SQLField(default=None, primary_key=True)
    version_id: int | None = SQLField(
        default=None, foreign_key="product_version.id", nullable=False, ondelete="CASCADE"
    )
    source_file: str = SQLField(max_length=500)
    source_sha256: str = SQLField(max_length=64)
    line: int = SQLField(description="1-based line (NDJSON) or row (Parquet) number")
    resource_type: str | None = SQLField(default=None, max_length=64)
    resource_id: str | None = SQLField(default=None, max_length=200)
    rule: str = SQLField(max_length=64)
    field: str | None = SQLField(default=None, max_length=200)
    detail: str = SQLField(max_length=2000)


class QuarantineRecord(RecordPointer, table=True):
    """One input record that did not become a row, and exactly why."""

    __tablename__ = "quarantine_record"
    __table_args__ = (Index("ix_quarantine_record_version_rule", "version_id", "rule"),)


class FindingRecord(RecordPointer, table=True):
    """One value that did not conform to its column's FHIR type: the cell was made null and
    the row kept. `field` is the column."""

    __tablename__ = "finding_record"
    __table_args__ = (Index("ix_finding_record_version_rule", "version_id", "rule"),)


class PublishRequest(BaseModel):
    """Body of `POST .../versions/{version}/publish`."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=2000,
        description="Server-side path (under an allowed source root) of a FHIR Bulk export folder, "
        "a Parquet file or a Delta table.",
    )
    extracted_at: UtcInstant | None = Field(
        default=None,
        description="When the source was extracted; the reference date for the 90+ age rule. "
        "Defaults to the export manifest's transactionTime, else the publish time.",
    )


class ReconvertRequest(BaseModel):
    """Body of `POST .../versions/{version}/reconvert`."""

    model_config = ConfigDict(extra="forbid")

    view: dict[str, Any] | None = Field(
        default=None, description="Fixed ViewDefinition; default: the version's own view."
    )


class QuarantineItem(BaseModel):
    """A quarantined input record as the API lists it."""

    version: str
    source_file: str
    source_sha256: str
    line: int
    resource_type: str | None
    resource_id: str | None
    rule: str
    field: str | None
    detail: str


class QuarantinePage(BaseModel):
    """Quarantined records of a product (or one version), with counts by reason."""

    counts: dict[str, int]
    total: int
    items: list[QuarantineItem]
    next_cursor: str | None


class FindingPage(BaseModel):
    """Findings of a product (or one version): values that did not conform to their column's
    FHIR type and were made null while the row was kept, with counts by rule."""

    counts: dict[str, int]
    total: int
    items: list[QuarantineItem]
    next_cursor: str | None
