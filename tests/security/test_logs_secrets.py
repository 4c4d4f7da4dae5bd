"""No credential or secret reaches a log line: every line of a realistic session is searched for
every secret the session issued or sent.

The server runs as `mesh serve` runs it (uvicorn with `logging_config()`, JSON lines), its
handler writing into a buffer. The session issues an activation link, describes and redeems it
(twice), reads with the token it gave (lists, pages, query, file GET/HEAD with signed URLs),
sends a bad token, a token-shaped guess, a guessed activation link and a tampered URL, and then
meets a database that is not there (the `database unavailable on ...` line).
"""

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from litestar.testing import RequestFactory
from sqlalchemy.engine import Engine

from catalog.app import create_app
from catalog.audit.context import logging_config, redact
from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings
from policies.enforcer import route_subject
from tests.live import free_port
from tests.problems import assert_problem, assert_protocol_error
from tests.security.served_demo import ADMIN_TOKEN, TABLE, build_demo, demo_settings

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser


@contextmanager
def production_logging() -> Iterator[tuple[io.StringIO, dict[str, Any]]]:
    """`mesh serve`'s logging configuration writing into a buffer; the test's own restored."""
    buffer = io.StringIO()
    config = logging_config(json_lines=True)
    config["handlers"]["default"]["stream"] = buffer
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    root = logging.getLogger()
    root_state = (root.handlers[:], root.level)
    try:
        yield buffer, config
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers, lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled
        root.handlers, root.level = root_state


@contextmanager
def served_like_mesh_serve(
    settings: Settings, port: int, log_config: dict[str, Any], engine: Engine | None = None
) -> Iterator[str]:
    """The app under uvicorn as `catalog.cli.run_server` starts it (no uvicorn access log)."""
    app = create_app(settings, engine=engine or make_engine(settings.resolved_database_url))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="info",
            log_config=log_config,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def secret_part(credential: str) -> str:
    """The secret of `prefix<16 hex id>_<secret>` (the id may be logged; the secret never)."""
    return credential.split("_", 2)[2]


def test_no_log_line_carries_a_secret(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    demo_profile = build_demo(home, port)
    settings = demo_settings(home, port)
    secrets: list[str] = [ADMIN_TOKEN, secret_part(demo_profile["bearerToken"])]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    with production_logging() as (buffer, config):
        with (
            served_like_mesh_serve(settings, port, config) as base,
            httpx.Client(timeout=60) as http,
        ):
            issued = http.post(
                base + "/api/v1/recipients/sepsis-research/activation-links",
                json={"valid_hours": 1},
                headers=admin,
            )
            assert issued.status_code == 201, issued.text
            link = issued.json()["url"]
            activation = link.rsplit("/", 1)[1]
            assert activation.startswith("dsa_")
            secrets += [activation, secret_part(activation)]

            assert http.get(link).status_code == 200
            profile = http.post(link)
            assert profile.status_code == 200, profile.text
            token = profile.json()["bearerToken"]
            secrets.append(secret_part(token))
            assert_protocol_error(http.post(link), 409)
            guessed = "dsa_0123456789abcdef_guessed-activation-secret"
            secrets.append(secret_part(guessed))
            assert_protocol_error(http.get(link.rsplit("/", 1)[0] + "/" + guessed), 404)
            assert_protocol_error(
                http.post(base + "/delta-sharing/activation/typed-by-hand-x1"), 404
            )
            secrets.append("typed-by-hand-x1")

            reader = {"Authorization": f"Bearer {token}"}
            assert http.get(base + "/delta-sharing/shares", headers=reader).status_code == 200
            page = http.get(
                base + "/delta-sharing/shares/sepsis-research/all-tables",
                params={"maxResults": 1},
                headers=reader,
            )
            assert page.status_code == 200
            answer = http.post(base + TABLE + "/query", json={}, headers=reader)
            assert answer.status_code == 200
            urls = [json.loads(line)["file"]["url"] for line in answer.text.splitlines()[2:]]
            for url in urls[:3]:
                secrets.append(parse_qs(urlsplit(url).query)["X-Amz-Signature"][0])
                assert http.head(url).status_code == 200
                assert http.get(url, headers={"Range": "bytes=0-7"}).status_code == 206
            tampered = urls[0][:-8] + "00000000"
            assert_protocol_error(http.get(tampered), 403)

            wrong = token.rsplit("_", 1)[0] + "_wrong-secret-of-a-real-id"
            shaped = "dsr_fedcba9876543210_a-guessed-secret-value"
            arbitrary = "not-a-token-at-all-but-still-private"
            for bad in (wrong, shaped, arbitrary):
                refused = http.get(
                    base + "/delta-sharing/shares", headers={"Authorization": f"Bearer {bad}"}
                )
                assert_protocol_error(refused, 401)
            secrets += [secret_part(wrong), secret_part(shaped), arbitrary]
            api_bad = http.get(
                base + "/api/v1/products", headers={"Authorization": f"Bearer {arbitrary}x"}
            )
            assert_problem(api_bad, 401)

        # The same server with its database gone: the error lines name the route, not the secret.
        missing = make_engine(f"sqlite:///{tmp_path / 'gone' / 'catalog.db'}")
        with (
            served_like_mesh_serve(settings, port, config, engine=missing) as base,
            httpx.Client(timeout=60) as http,
        ):
            for method in ("GET", "POST"):
                down = http.request(method, link)
                assert down.status_code == 503, down.text
            assert http.get(base + "/api/v1/products", headers=admin).status_code == 503
            http.get(base + "/delta-sharing/shares", headers={"Authorization": f"Bearer {token}"})

    lines = buffer.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert any(m.startswith("POST /delta-sharing/activation/") for m in messages)
    assert any(m.startswith("database unavailable on /delta-sharing/activation/") for m in messages)
    assert any(m.startswith("GET /delta-sharing/files/") for m in messages)
    assert all(len(s) >= 8 for s in secrets)
    leaks = [(s, line) for line in lines for s in secrets if s in line]
    assert not leaks, leaks[:3]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("POST /delta-sharing/activation/dsa_0123456789abcdef_AbC-d_ef 200", "AbC-d_ef"),
        ("GET /delta-sharing/activation/hand-typed-guess 404", "hand-typed-guess"),
        ("Authorization: bearer some-admin-token", "some-admin-token"),
        ("refused dsr_0123456789abcdef_Zz-_q9 for mesh_0123456789abcdef_k-Y", "Zz-_q9"),
        ("refused dsr_0123456789abcdef_Zz-_q9 for mesh_0123456789abcdef_k-Y", "k-Y"),
        ("GET https://h/delta-sharing/files/a.parquet?X-Amz-Signature=ab12 x", "ab12"),
        ("GET https://bucket.s3/a?X-Amz-Credential=AKIA%2F&X-Amz-Signature=f0 x", "AKIA"),
        ("signed: X-Amz-Signature=ab12cd&sig=99ff", "ab12cd"),
        ("signed: X-Amz-Signature=ab12cd&sig=99ff", "99ff"),
        ("id token eyJhbGciOiJI.eyJzdWIiOiJ4In0.c2ln", "eyJzdWIiOiJ4In0"),
        ("cookie: mesh_console=c2VhbGVk-c2Vzc2lvbg; theme=dark", "c2VhbGVk-c2Vzc2lvbg"),
        ("set-cookie mesh_console=QUJDREVGR0g; Path=/console", "QUJDREVGR0g"),
        ("cookie: mesh_console_oidc=cGVuZGluZw; mesh_console=x", "cGVuZGluZw"),
        ("form token=not-prefixed-admin&_csrf=0a1b2c3d4e5f&next=/", "0a1b2c3d4e5f"),
        ("X-CSRF-Token: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("headers {'x-csrf-token': '9f8e7d6c5b4a'}", "9f8e7d6c5b4a"),
        ("GET /console/activate/hand-typed-guess 404", "hand-typed-guess"),
    ],
)
def test_redact_removes_every_kind_of_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redaction_keeps_what_is_not_secret() -> None:
    for text in ("GET /api/v1/products 200", "is it ok? yes", "token id 0123456789abcdef"):
        assert redact(text) == text
    assert redact("auth.failed dsr_0123456789abcdef_s3cr3t") == (
        "auth.failed dsr_0123456789abcdef_[redacted]"
    )


def test_records_of_any_logger_are_redacted_when_made() -> None:
    """Whatever handler or format writes them: the record itself no longer holds the secret."""
    create_app(Settings(database_url="sqlite://"))  # installs the redaction, as serving does
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log = logging.getLogger("some.library")
    handler = Keep()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("calling %s with %s", "/delta-sharing/activation/dsa_0123456789abcdef_zz", "x")
        log.info("header Bearer %s", "arbitrary-admin-token")
        try:
            raise RuntimeError("failed on /delta-sharing/activation/dsa_0123456789abcdef_yy")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)
    text = " ".join(r.getMessage() + (r.exc_text or "") for r in seen)
    assert "_zz" not in text and "arbitrary-admin-token" not in text and "_yy" not in text


def test_audit_subjects_of_refused_routes_carry_no_path_secret() -> None:
    request = RequestFactory().post("/delta-sharing/activation/dsa_0123456789abcdef_s3cr3t-v4lue")
    assert route_subject(request) == "POST /delta-sharing/activation/[redacted]"


def test_error_bodies_carry_no_path_secret(client: Any) -> None:
    guessed = "dsa_0123456789abcdef_guessed-secret-value"
    for method in ("GET", "POST"):
        answer = client.request(method, f"/delta-sharing/activation/{guessed}")
        assert_protocol_error(answer, 404)
        # The activation endpoint answers in the protocol's error shape, which names no path;
        # whatever shape answers, the secret is nowhere in it.
        refusal = answer.json()
        assert refusal["errorCode"] == "RESOURCE_DOES_NOT_EXIST", refusal
        assert refusal.get("instance", "/delta-sharing/activation/[redacted]").endswith(
            "[redacted]"
        )
        assert "guessed-secret-value" not in answer.text
