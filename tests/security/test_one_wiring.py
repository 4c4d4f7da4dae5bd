"""The CLI and the API deprecate and retire through one wiring: the same notices on grants."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from catalog.cli import app
from catalog.products import service
from catalog.products.models import VersionStatus
from tests.factories import FixedClock, make_version


@pytest.fixture
def clock() -> FixedClock:
    # The CLI runs on the system clock: the estate lives at the same time.
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


def _published(engine, clock, *versions: str) -> None:
    with Session(engine, expire_on_commit=False) as s:
        product = service.get_product(s, "st-marys", "patients")
        for v in versions:
            make_version(s, clock, product, v).status = VersionStatus.PUBLISHED
        s.commit()


def _notices(estate, grant_id: int) -> list[dict]:
    r = estate.call("admin1", "GET", f"/api/v1/grants/{grant_id}")
    assert r.status_code == 200, r.text
    return r.json()["notices"]


def test_deprecating_and_retiring_from_the_cli_notify_the_grants_like_the_api(
    estate, engine, clock, database_url, tmp_path
):
    grant_id = estate.approved_grant()[1]["id"]
    _published(engine, clock, "1.0.0", "1.1.0", "1.2.0")
    env = {"MESH_DATABASE_URL": database_url, "MESH_HOME": str(tmp_path / "home")}

    assert estate.deprecate("1.0.0", "use 1.2.0")["affected_grants"] == [grant_id]
    cli = CliRunner().invoke(
        app,
        [
            "versions",
            "deprecate",
            "st-marys/patients",
            "--version",
            "1.1.0",
            "--reason",
            "use 1.2.0",
        ],
        env=env,
    )
    assert cli.exit_code == 0, cli.output
    assert f"grants notified: {grant_id}" in cli.stdout

    by_api, by_cli = _notices(estate, grant_id)
    assert by_api["message"] == by_cli["message"].replace("1.1.0", "1.0.0")
    expected = (clock.now() + timedelta(days=30)).date().isoformat()
    assert by_api["served_until"][:10] == by_cli["served_until"][:10] == expected

    retired = CliRunner().invoke(
        app, ["products", "retire", "st-marys/patients", "--reason", "replaced"], env=env
    )
    assert retired.exit_code == 0, retired.output
    notices = _notices(estate, grant_id)
    # Retiring the product retires each served version and tells the grant, as the API does.
    assert sorted(n["message"].split(" was ")[0] for n in notices[2:]) == [
        "version 1.0.0",
        "version 1.1.0",
        "version 1.2.0",
    ]
    assert all("was retired: replaced" in n["message"] for n in notices[2:])
