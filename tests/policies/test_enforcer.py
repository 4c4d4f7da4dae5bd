"""The policy engine: a publisher's scope on catalog writes, a policy change seen by a second process."""

from litestar.testing import TestClient

from catalog.app import create_app
from tests.factories import version_body
from tests.problems import assert_problem


def test_publisher_scope_on_catalog_writes(estate):
    ok = estate.call(
        "pub-sm", "POST", "/api/v1/products/st-marys/patients/versions", json=version_body()
    )
    assert ok.status_code == 201
    other = estate.call(
        "pub-sm", "POST", "/api/v1/products/riverside/vitals/versions", json=version_body()
    )
    assert_problem(other, 403)
    assert other.json()["detail"] == "missing permission product:write in domain 'riverside'"
    publish = estate.call(
        "pub-sm",
        "POST",
        "/api/v1/products/riverside/vitals/versions/1.0.0/publish",
        json={"source": "/x"},
    )
    assert_problem(publish, 403)


def test_policy_change_reaches_a_second_process(settings, engine, clock, estate):
    """The second process's next request sees the change (one governance revision, read as the
    request is authenticated), however long its refresh interval."""
    other_settings = settings.model_copy(update={"policy_refresh_seconds": 2.0})
    with TestClient(create_app(other_settings, engine=engine, clock=clock)) as second:
        headers = {"Authorization": f"Bearer {estate.tokens['pub-sm']}"}
        body = version_body()
        assert (
            second.post(
                "/api/v1/products/riverside/vitals/versions", json=body, headers=headers
            ).status_code
            == 403
        )
        # Through the first process, make pub-sm a publisher of riverside as well.
        from sqlmodel import Session

        from policies.enforcer import add_rule, role_subject, user_subject

        with Session(engine) as s:
            add_rule(
                s,
                "g",
                [user_subject("pub-sm"), role_subject("publisher"), "riverside"],
                now=clock.now(),
            )
            s.commit()
        assert (
            second.post(
                "/api/v1/products/riverside/vitals/versions", json=body, headers=headers
            ).status_code
            == 201
        )
