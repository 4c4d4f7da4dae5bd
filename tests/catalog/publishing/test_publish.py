"""Publishing FHIR NDJSON into Delta tiers, against real Delta tables and both databases."""

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from sqlmodel import select

from catalog.products.models import VersionStatus
from catalog.publishing import service
from catalog.publishing.models import QuarantineRecord
from catalog.publishing.tiers.derive import write_tier
from tests.catalog.publishing.conftest import EXTRACTED, GOOD, ROWS, dirty_lines, publish, read
from tests.factories import ACTOR


def test_every_record_is_a_row_or_quarantined(
    session, clock, patients_version, export_dir, publish_settings
):
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    assert version.status == VersionStatus.PUBLISHED, version.checks
    counts = version.counts
    _, expected_rules = dirty_lines()
    assert counts["input_records"] == len(ROWS) + len(expected_rules)
    assert (
        counts["records_with_rows"] + counts["excluded_by_view"] + counts["quarantined"]
        == counts["input_records"]
    )
    assert counts["records_with_rows"] == len(ROWS) == counts["rows"]
    assert counts["quarantined_by_rule"] == dict(Counter(expected_rules))
    assert counts["findings_by_rule"] == {"date": 1}  # p7's "unknown" birth date
    assert counts["records_with_findings"] == 1 and counts["duplicates"] == 1
    records = session.exec(select(QuarantineRecord).order_by(QuarantineRecord.line)).all()
    assert [r.rule for r in records] == expected_rules
    raw = version.lineage["raw_files"]
    assert [r["name"] for r in raw] == ["Patient.ndjson"]
    assert {r.source_sha256 for r in records} == {raw[0]["sha256"]}
    assert records[0].line == 7 and records[0].detail == "exact duplicate of Patient.ndjson line 1"
    assert records[-1].line == 16  # the truncated last line, after the blank line 14
    assert version.counts["legacy_conversions"] == {
        "DD-Mon-YYYY": 1,
        "MM/DD/YYYY": 1,
        "YYYYMMDD": 1,
    }
    assert version.lineage["ignored_files"] == ["Practitioner.ndjson"]
    assert version.extracted_at == EXTRACTED  # from the export manifest
    assert len(read(version, "full")) == len(ROWS)


def test_raw_payload_is_kept_immutably(
    session, clock, patients_version, export_dir, publish_settings
):
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    sha = version.lineage["raw_files"][0]["sha256"]
    landed = Path(publish_settings.storage_root) / "raw" / sha
    assert landed.read_bytes() == (export_dir / "Patient.ndjson").read_bytes()
    assert landed.stat().st_mode & 0o222 == 0


def test_contract_failure_quarantines_the_version(
    session, clock, patients_version, export_dir, publish_settings
):
    patients_version.sla = {
        **patients_version.sla,
        "completeness": [{"column": "birth_date", "min_percent": 99.0}],
    }
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    assert version.status == VersionStatus.QUARANTINED
    failed = [c for c in version.checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["completeness:birth_date"]
    assert failed[0]["measured"] == pytest.approx(75.0, abs=0.01)  # 6 of 8 rows
    assert version.tier_tables is None
    assert "completeness:birth_date" in version.status_reason
    with pytest.raises(Exception, match="only a draft"):
        publish(session, version, export_dir, publish_settings, clock)


def test_freshness_is_checked_against_the_clock(
    session, clock, patients_version, export_dir, publish_settings
):
    columns = [*patients_version.columns]
    columns[4] = {**columns[4], "type": "date32"}
    patients_version.sla = {
        **patients_version.sla,
        "freshness": "1d",
        "freshness_column": "birth_date",
    }
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    check = next(c for c in version.checks if c["name"] == "freshness:birth_date")
    assert check["passed"] is False
    assert check["measured"].startswith("1999-12-31")
    assert version.status == VersionStatus.QUARANTINED


def test_reconvert_with_a_fixed_view_makes_a_new_patch_version(
    session, clock, patients_version, export_dir, publish_settings
):
    first = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    view = dict(first.view)
    select_ = [dict(s) for s in view["select"]]
    columns = [dict(c) for c in select_[0]["column"]]
    columns[5] = {"name": "gender", "path": "gender.replace('X', 'unknown')"}
    select_[0]["column"] = columns
    view["select"] = select_
    fixed = service.reconvert_version(
        session, first, view=view, settings=publish_settings, clock=clock, actor=ACTOR
    )
    session.commit()
    assert fixed.version == "1.0.1"
    assert fixed.status == VersionStatus.PUBLISHED
    assert fixed.lineage["reconverted_from"] == "1.0.0"
    assert fixed.lineage["raw_files"] == first.lineage["raw_files"]
    assert fixed.counts["quarantined_by_rule"].get("value-set") is None
    assert fixed.counts["rows"] == first.counts["rows"] + 1
    assert first.status == VersionStatus.PUBLISHED and first.version == "1.0.0"
    # Time travel by product version: each version keeps its own Delta version.
    assert first.tier_tables["full"]["delta_version"] == 0
    assert fixed.tier_tables["full"]["delta_version"] == 1
    assert len(read(first, "full")) == len(ROWS)
    assert len(read(fixed, "full")) == len(ROWS) + 1
    cdf = DeltaTable(fixed.tier_tables["full"]["location"]).load_cdf(starting_version=1).read_all()
    assert set(cdf.column("_change_type").to_pylist()) >= {"insert"}


def test_gzip_export(session, clock, patients_version, export_dir, publish_settings):
    import gzip

    data = (export_dir / "Patient.ndjson").read_bytes()
    (export_dir / "Patient.ndjson").unlink()
    (export_dir / "Patient.000.ndjson.gz").write_bytes(gzip.compress(data))
    version = publish(session, patients_version, export_dir, publish_settings, clock)
    assert version.counts["records_with_rows"] == len(ROWS)
    assert version.lineage["raw_files"][0]["name"] == "Patient.000.ndjson.gz"


def test_crash_while_writing_leaves_prior_version_readable(
    session, clock, patients_version, export_dir, publish_settings
):
    first = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    uri = first.tier_tables["full"]["location"]
    before = read(first, "full")

    def exploding():
        yield before.to_batches()[0]
        raise OSError("disk vanished mid-write")

    reader = pa.RecordBatchReader.from_batches(before.schema, exploding())
    with pytest.raises(Exception, match="disk vanished"):
        write_tier(
            uri,
            reader,
            storage=service.Storage.from_settings(publish_settings),
            product_version="9.9.9",
        )
    table = DeltaTable(uri)
    assert table.version() == 0
    assert table.to_pyarrow_table().num_rows == len(ROWS)


def test_source_outside_allowed_roots_is_refused(publish_settings, tmp_path):
    with pytest.raises(Exception, match="outside the folders"):
        service.check_source_allowed(publish_settings, "/etc", domain="st-marys")
    inside = tmp_path / "sources" / "st-marys" / "x"
    allowed = service.check_source_allowed(publish_settings, str(inside), domain="st-marys")
    assert allowed == inside.resolve()
    with pytest.raises(Exception, match="outside the folders"):
        service.check_source_allowed(
            publish_settings, str(tmp_path / "sources" / ".." / "elsewhere"), domain="st-marys"
        )


def test_concurrent_publishes_of_one_version_make_one_version(
    backend, engine, clock, patients_version, export_dir, publish_settings, session
):
    """Two publishers at once (real threads, real PostgreSQL): one wins, one clear conflict."""
    if backend != "postgresql":
        pytest.skip("SQLite has a single writer; the PostgreSQL case exercises the locks")
    import threading

    from sqlmodel import Session

    from catalog.kernel.errors import Conflict
    from catalog.products import service as products

    session.commit()
    barrier = threading.Barrier(2)
    outcomes = []

    def publisher():
        with Session(engine, expire_on_commit=False) as own:
            found = products.get_version(own, "st-marys", "patients", "1.0.0")
            barrier.wait()
            try:
                service.publish_version(
                    own, found, export_dir, settings=publish_settings, clock=clock, actor=ACTOR
                )
                own.commit()
                outcomes.append("published")
            except Conflict as exc:
                own.rollback()
                outcomes.append(f"conflict: {exc.detail}")

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "published"]
    refusal = next(o for o in outcomes if o.startswith("conflict"))
    # The loser either saw the version published or gave up waiting for the publish lock (busy).
    assert "published concurrently" in refusal or "busy" in refusal.lower(), refusal
    session.expire_all()
    version = products.get_version(session, "st-marys", "patients", "1.0.0")
    assert version.status == VersionStatus.PUBLISHED
    assert DeltaTable(version.tier_tables["full"]["location"]).version() == 0


def test_invalid_utf8_line_is_quarantined_with_its_line(
    session, clock, patients_version, tmp_path, publish_settings
):
    from tests.catalog.publishing.conftest import line

    folder = tmp_path / "sources" / "latin1"
    folder.mkdir(parents=True)
    good = [line(p).encode() for p in GOOD]
    broken = line(GOOD[0]).replace(GOOD[0]["id"], "p-latin").encode()[:-2] + b'\xe9\xff"}'
    (folder / "Patient.ndjson").write_bytes(b"\n".join([*good[:1], broken, *good[1:]]) + b"\n")
    version = publish(session, patients_version, folder, publish_settings, clock)
    session.commit()
    records = session.exec(select(QuarantineRecord)).all()
    assert [(r.rule, r.line) for r in records] == [("encoding", 2)]
    assert "invalid UTF-8" in records[0].detail
    assert version.counts["rows"] == len(GOOD)


def test_reconvert_with_a_view_that_does_not_fit_is_a_clear_error(
    session, clock, patients_version, export_dir, publish_settings
):
    from catalog.kernel.errors import ValidationFailed

    version = publish(session, patients_version, export_dir, publish_settings, clock)
    session.commit()
    with pytest.raises(ValidationFailed, match="view"):
        service.reconvert_version(
            session, version, view={"foo": 1}, settings=publish_settings, clock=clock, actor=ACTOR
        )


def test_a_publish_is_never_ended_as_idle_in_transaction(
    backend, clock, patients_version, export_dir, publish_settings, session
):
    """Converting a large export issues no statement for minutes: the server-wide
    idle-in-transaction bound (MESH_DB_IDLE_IN_TRANSACTION_SECONDS) is lifted for a publish's
    own transaction, and only for it."""
    if backend != "postgresql":
        pytest.skip("idle_in_transaction_session_timeout is PostgreSQL's")
    from sqlalchemy import text

    def idle_bound():
        return session.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()

    assert idle_bound() != "0"
    service.publish_version(
        session, patients_version, export_dir, settings=publish_settings, clock=clock, actor=ACTOR
    )
    assert idle_bound() == "0"
    session.commit()
    assert idle_bound() != "0"  # SET LOCAL: the next transaction has the bound again
