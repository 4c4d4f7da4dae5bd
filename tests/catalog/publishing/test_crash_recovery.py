"""A publish killed between its Delta commits and its catalog commit, then retried.

The crash is real: `mesh publish` runs in a child process whose `write_tier` (ours, wrapping the
real deltalake write) ends the process with `os._exit` right after the first tier's commit, so no
`finally`, rollback or cleanup runs. The retry is an ordinary `mesh publish`, and the consumer's
view is read with the official `delta_sharing` client against a real server.
"""

import json
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import delta_sharing
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from sqlmodel import Session
from typer.testing import CliRunner

from catalog.audit.record import Operator
from catalog.cli import app as mesh
from catalog.kernel.db import make_engine, transaction
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import VersionSpec, VersionStatus
from catalog.publishing import service as publishing
from sharing import delta
from tests.live import demo_estate, free_port, serving

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

TABLE = "sepsis-research.st-marys.patients"
META = ["_change_type", "_commit_version", "_commit_timestamp"]
CRASH = textwrap.dedent(
    """
    import os, sys
    from catalog.publishing.tiers import derive

    real, after, commits = derive.write_tier, int(sys.argv[1]), []

    def crash_after_commit(*args, **kwargs):
        commits.append(real(*args, **kwargs))
        if len(commits) == after:
            os._exit(137)  # killed: nothing after this tier's Delta commit runs

    derive.write_tier = crash_after_commit
    from catalog.cli import app
    app(sys.argv[2:])
    """
)


def _rows(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    data = frame.drop(columns=[c for c in META if c in frame.columns])
    data = data[sorted(data.columns)].astype(str)
    return sorted(data.itertuples(index=False, name=None))


@pytest.fixture(
    scope="module",
    params=[("sqlite", 1), ("sqlite", 3), ("postgresql", 1), ("postgresql", 3)],
    ids=[
        "sqlite-first-tier",
        "sqlite-every-tier",
        "postgresql-first-tier",
        "postgresql-every-tier",
    ],
)
def crashed_then_retried(request, tmp_path_factory, fresh_database_url):
    """The demo, then st-marys/patients 1.1.1 from a new export: killed once, then retried.

    Killed after the first tier's commit, or after all three (just before the catalog commit).
    """
    backend, after = request.param
    url = fresh_database_url(backend)
    home = tmp_path_factory.mktemp("crash-home")
    port = free_port()
    env = demo_estate(home, port, database_url=url if backend == "postgresql" else "").env
    runner = CliRunner()
    settings = Settings(home=home, database_url=env["MESH_DATABASE_URL"] or None, port=port)
    engine = make_engine(settings.resolved_database_url)
    with transaction(engine) as session:
        product = products.get_product(session, "st-marys", "patients")
        latest = products.get_version(session, "st-marys", "patients", "1.1.0")
        spec = VersionSpec.model_validate(
            {**latest.spec().model_dump(), "version": "1.1.1", "changelog": "Fresh export."}
        )
        products.register_version(session, product, spec, actor=Operator("test"), clock=_Now())
    source = str(_fresh_export(home))
    args = ["publish", "st-marys/patients", "--version", "1.1.1", "--from", source]
    killed = subprocess.run(
        [sys.executable, "-c", CRASH, str(after), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == 137, killed.stderr
    staging = home / "storage" / "staging"
    left_behind = sorted(p.name for p in staging.iterdir())
    with Session(engine) as session:
        status = products.get_version(session, "st-marys", "patients", "1.1.1").status
    assert status == VersionStatus.DRAFT  # the catalog never saw the crashed publish
    retried = runner.invoke(mesh, args, env=env)
    assert retried.exit_code == 0, retried.output
    with serving(settings, port, engine=engine):
        yield {
            "home": home,
            "profile": f"{home / 'profiles' / 'sepsis-research.share'}#{TABLE}",
            "left_behind": left_behind,
            "staging": staging,
            "engine": engine,
            "crashed_after": after,
        }
    engine.dispose()


def _fresh_export(home: Path) -> Path:
    """The demo's St Mary's export with every male patient now female: other rows, same SLA."""
    (first,) = (home / "sources" / "st-marys").glob("export-*")
    target = home / "sources" / "st-marys" / "export-retry"
    shutil.copytree(first, target)
    for path in target.glob("Patient*.ndjson"):
        lines = []
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                resource = json.loads(text)
            except ValueError:
                lines.append(text)
                continue
            if isinstance(resource, dict) and resource.get("gender") == "male":
                resource["gender"] = "female"
            lines.append(json.dumps(resource))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target.resolve()


class _Now:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _delta_versions(engine, version: str) -> dict[str, int]:
    with Session(engine) as session:
        found = products.get_version(session, "st-marys", "patients", version)
        return {t: v["delta_version"] for t, v in (found.tier_tables or {}).items()}


def test_the_change_feed_is_computed_against_the_published_versions(crashed_then_retried):
    estate = crashed_then_retried
    table = str(estate["home"] / "storage/products/st-marys/patients/deidentified")
    old, new = (_delta_versions(estate["engine"], v)["deidentified"] for v in ("1.1.0", "1.1.1"))
    assert new == old + 2  # the crashed publish left an orphan Delta version between them
    before, retried = (_delta_versions(estate["engine"], v) for v in ("1.1.0", "1.1.1"))
    orphaned = [t for t in retried if retried[t] == before[t] + 2]
    assert orphaned == ["deidentified", "limited", "full"][: estate["crashed_after"]]
    published = {v: DeltaTable(table, version=v).to_pandas() for v in (0, old, new)}
    orphan = DeltaTable(table, version=old + 1).to_pandas()
    assert _rows(orphan) != _rows(published[old])

    feed = delta_sharing.load_table_changes_as_pandas(
        estate["profile"], starting_version=0, use_delta_format=False
    )
    assert set(feed["_commit_version"]) == {0, old, new}  # the orphan never appears

    # The parquet feed has the start version's schema: 1.0.0, without 1.1.0's race_code.
    shared = [c for c in published[0].columns if c in feed.columns]

    def part(version: int, kind: str) -> list[tuple[object, ...]]:
        chosen = feed[(feed._commit_version == version) & (feed._change_type == kind)]
        return _rows(chosen[shared])

    def rows_of(version: int) -> list[tuple[object, ...]]:
        return _rows(published[version][shared])

    assert part(0, "insert") == rows_of(0)
    assert part(old, "delete") == rows_of(0)
    assert part(old, "insert") == rows_of(old)
    assert part(new, "delete") == rows_of(old)  # 1.1.0's rows, not the orphan's
    assert part(new, "insert") == rows_of(new)

    # The delta format (delta-kernel) from the last published version before the retry.
    kernel = delta_sharing.load_table_changes_as_pandas(
        estate["profile"], starting_version=old, use_delta_format=True
    )
    assert set(kernel["_commit_version"]) == {old, new}
    deleted = kernel[(kernel._commit_version == new) & (kernel._change_type == "delete")]
    inserted = kernel[(kernel._commit_version == new) & (kernel._change_type == "insert")]
    assert _rows(deleted) == _rows(published[old])
    assert _rows(inserted) == _rows(published[new])


def test_the_retry_removes_the_staging_file_the_crash_left(crashed_then_retried):
    estate = crashed_then_retried
    assert len(estate["left_behind"]) == 1  # the killed publish's full rows, source ids included
    assert list(estate["staging"].iterdir()) == []
    raw = estate["home"] / "storage" / "raw"
    assert not [p for p in raw.iterdir() if p.name.startswith(".incoming-")]


def test_a_first_version_after_an_orphan_is_all_inserts(tmp_path):
    """A crash on a table's very first publish: the first published version deletes nothing."""
    location = str(tmp_path / "t")
    write_deltalake(location, pa.table({"id": ["orphan-1", "orphan-2"]}))  # never published
    write_deltalake(location, pa.table({"id": ["a", "b", "c"]}), mode="overwrite")
    feed = delta.changes(location, [1], None, previous=None)
    assert [c.kind for c in feed] == ["add"]
    assert DeltaTable(location, version=1).file_uris()[0].endswith(feed[0].path)


def test_a_publish_clears_what_any_crashed_publish_left(
    session, clock, patients_version, export_dir, publish_settings
):
    """A staging file (killed converting) and an unfinished landing (killed copying)."""
    root = Path(publish_settings.storage_root)
    (root / "staging").mkdir(parents=True)
    (root / "raw").mkdir(parents=True)
    staged = root / "staging" / "0123abcd.parquet"
    staged.write_bytes(b"PAR1 the full rows of a publish that was killed")
    landing = root / "raw" / ".incoming-0123abcd"
    landing.write_bytes(b"half a copied export")
    version = publishing.publish_version(
        session,
        patients_version,
        export_dir,
        settings=publish_settings,
        clock=clock,
        actor=Operator("test"),
    )
    assert version.status == VersionStatus.PUBLISHED
    assert not staged.exists() and not landing.exists()
    assert list((root / "staging").iterdir()) == []
    assert [p.name for p in (root / "raw").iterdir()] == [
        r["sha256"] for r in version.lineage["raw_files"]
    ]  # the landed payload stays
