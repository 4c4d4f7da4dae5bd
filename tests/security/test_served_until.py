"""A deprecated version is served until its `served_until`, and not a moment longer.

The demo estate behind a real server whose clock the test moves (no sleeps): listing, metadata,
query, changes and file URLs all stop serving a deprecated version at its end of service, and a
deprecation whose end of service is already past is refused by the API and the CLI.
"""

import json
from datetime import UTC, datetime, timedelta

import delta_sharing
import pytest
import requests
from sqlmodel import Session
from typer.testing import CliRunner

from catalog.cli import app as mesh
from catalog.kernel import migrate
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings
from catalog.products import service as products
from tests.conftest import ADMIN_TOKEN
from tests.factories import FixedClock
from tests.live import demo_estate, free_port, serving
from tests.problems import assert_problem, assert_protocol_error

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

TABLE = "sepsis-research.st-marys.patients"
PROTOCOL = "/delta-sharing/shares/sepsis-research"
PATIENTS = PROTOCOL + "/schemas/st-marys/tables/patients"
VERSIONS = "/api/v1/products/st-marys/patients/versions"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def estate(request, tmp_path_factory, fresh_database_url):
    url = fresh_database_url(request.param)
    database = url if request.param == "postgresql" else ""
    home = tmp_path_factory.mktemp("served-until")
    port = free_port()
    demo = demo_estate(home, port, database_url=database)
    settings = Settings(
        home=home, database_url=database or None, port=port, admin_token=ADMIN_TOKEN,
    )  # fmt: skip
    engine = make_engine(settings.resolved_database_url)
    clock = FixedClock(datetime.now(UTC))
    with serving(settings, port, engine=engine, clock=clock):
        yield {
            "env": demo.env,
            "base": demo.base,
            "clock": clock,
            "profile": f"{demo.profile_path}#{TABLE}",
            "auth": {"Authorization": f"Bearer {demo.token}"},
            "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        }  # fmt: skip
    engine.dispose()


def _deprecate(estate, version: str, until: datetime) -> requests.Response:
    return requests.post(
        f"{estate['base']}{VERSIONS}/{version}/deprecate",
        json={"reason": "superseded by 2.0.0", "served_until": until.isoformat()},
        headers=estate["admin"],
        timeout=30,
    )


def _query(estate, body: dict[str, object]) -> requests.Response:
    return requests.post(
        f"{estate['base']}{PATIENTS}/query", json=body, headers=estate["auth"], timeout=30
    )


def _files(answer: requests.Response) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in answer.text.splitlines()]
    return [line["file"] for line in lines if "file" in line]


def test_a_deprecated_version_stops_being_served_at_served_until(estate):
    clock: FixedClock = estate["clock"]
    now = clock.now()
    past = _deprecate(estate, "1.0.0", now - timedelta(minutes=1))
    assert_problem(past, 422)
    assert past.headers["content-type"].startswith("application/problem+json")
    assert "served_until" in past.json()["detail"] and "not in the future" in past.json()["detail"]
    assert past.json()["errors"][0]["path"] == "served_until"

    first_end, last_end = now + timedelta(minutes=30), now + timedelta(hours=2)
    r = _deprecate(estate, "1.0.0", first_end)
    assert r.status_code == 200, r.text
    assert r.json()["version"]["served_until"] == first_end.isoformat().replace("+00:00", "Z")
    assert _deprecate(estate, "1.1.0", last_end).status_code == 200

    # Before its end of service 1.0.0 (Delta version 0) is served, with URLs that end with it.
    old = _query(estate, {"version": 0})
    assert old.status_code == 200, old.text
    files = _files(old)
    assert files and all(
        int(str(f["expirationTimestamp"])) <= first_end.timestamp() * 1000 for f in files
    )
    url = str(files[0]["url"])
    assert requests.get(url, timeout=30).status_code == 200
    assert len(delta_sharing.load_as_pandas(estate["profile"], version=0)) > 0
    feed = delta_sharing.load_table_changes_as_pandas(estate["profile"], starting_version=0)
    assert set(feed["_commit_version"]) == {0, 1}

    clock.advance(minutes=30)  # 1.0.0's served_until: no longer served
    refused = _query(estate, {"version": 0})
    assert refused.status_code == 400 and "not a published version" in refused.json()["message"]
    assert_protocol_error(requests.get(url, timeout=30), 403)  # a URL handed out before
    feed = delta_sharing.load_table_changes_as_pandas(estate["profile"], starting_version=0)
    assert set(feed["_commit_version"]) == {1}
    assert set(feed["_change_type"]) == {"insert"}  # no deletes carrying 1.0.0's rows
    assert _query(estate, {}).status_code == 200  # 1.1.0 is still served

    clock.advance(hours=1, minutes=30)  # 1.1.0's served_until: the table has nothing to serve
    tables = requests.get(
        f"{estate['base']}{PROTOCOL}/all-tables", headers=estate["auth"], timeout=30
    ).json()["items"]
    assert ("st-marys", "patients") not in {(t["schema"], t["name"]) for t in tables}
    for answer in (
        requests.get(f"{estate['base']}{PATIENTS}/metadata", headers=estate["auth"], timeout=30),
        requests.get(f"{estate['base']}{PATIENTS}/version", headers=estate["auth"], timeout=30),
        requests.get(
            f"{estate['base']}{PATIENTS}/changes?startingVersion=0",
            headers=estate["auth"],
            timeout=30,
        ),
        _query(estate, {}),
    ):
        assert_protocol_error(answer, 404)


def test_the_cli_refuses_a_past_served_until_and_defaults_to_the_notice_period(estate):
    runner = CliRunner()
    args = ["versions", "deprecate", "st-marys/encounters", "--version", "1.0.0"]
    past = runner.invoke(
        mesh,
        [*args, "--reason", "moved", "--served-until", "2020-01-01T00:00:00"],
        env=estate["env"],
    )
    assert past.exit_code == 1
    assert "not in the future" in past.output
    done = runner.invoke(mesh, [*args, "--reason", "moved"], env=estate["env"])
    assert done.exit_code == 0, done.output
    assert "served until" in done.output


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_versions_deprecated_before_the_migration_keep_the_date_their_consumers_were_told(
    backend_name, tmp_path, fresh_database_url
):
    url = fresh_database_url(backend_name)
    database = url if backend_name == "postgresql" else ""
    env = {"MESH_DATABASE_URL": database, "MESH_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    done = runner.invoke(mesh, ["demo", "--no-serve", "--patients", "250"], env=env)
    assert done.exit_code == 0, done.output
    told = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    for product, until in (("st-marys/patients", told), ("riverside/ed-encounters", None)):
        args = ["versions", "deprecate", product, "--version", "1.0.0", "--reason", "superseded"]
        if until is not None:
            args += ["--served-until", until.isoformat()]
        assert runner.invoke(mesh, args, env=env).exit_code == 0
    engine = make_engine(
        Settings(home=tmp_path / "home", database_url=database or None).resolved_database_url
    )
    migrate.downgrade(engine, "5a1f0c2d9e7b")  # as if deprecated before served_until was stored
    migrate.upgrade(engine)
    with Session(engine) as session:
        notified = products.get_version(session, "st-marys", "patients", "1.0.0")
        unnotified = products.get_version(session, "riverside", "ed-encounters", "1.0.0")
        assert notified.served_until == told  # the grant holders' notices named it
        assert unnotified.served_until is None  # nobody was told a date: served as before
    engine.dispose()
