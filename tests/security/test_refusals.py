"""The file endpoint's scope, and an audit entry for every refusal (real server, real client).

A valid signature used to reach anything under the storage root; now only Parquet data files
of tier tables the URL's recipient may read at that moment. Every refusal of a sharing, file or
activation request leaves exactly one `sharing.denied` entry (route with secrets redacted, the
recipient and token id when known, the reason), written through the group-commit writer: a
flood of probes neither fails nor holds up reads.
"""

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import delta_sharing
import pytest
import requests
from sqlalchemy import text
from sqlmodel import Session

from catalog.audit.record import Operator
from policies.auth import split_secret
from policies.principals.service import get_organization
from sharing.files.urls import FILES, _signed_message
from sharing.recipients import service as recipients
from sharing.signing import mac, signing_key
from tests.problems import assert_protocol_error

SHARE = "sepsis-research"
QUERY = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients/query"
WAIT = 20.0  # seconds an entry may take to become durable (written after the answer)


def _sign(
    estate, relative: str, recipient: str = SHARE, lifetime: int = 600, token_id: str = ""
) -> str:
    expires = int(time.time()) + lifetime
    token_id = token_id or _token_id(estate)
    key = signing_key(estate["settings"])
    signature = mac(key, _signed_message(relative, expires, recipient, token_id))
    return (
        f"{estate['base']}{FILES}/{quote(relative)}?X-Mesh-Recipient={quote(recipient)}"
        f"&X-Mesh-Token={token_id}&X-Amz-Expires={expires}&X-Amz-Signature={signature}"
    )


def _denied(estate, request_id: str, *, wait: bool = True) -> list[dict]:
    """The sharing.denied entries of one request, once at least one is durable."""
    deadline = time.monotonic() + (WAIT if wait else 0)
    while True:
        with estate["engine"].connect() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    text(
                        "SELECT * FROM audit_event WHERE action = 'sharing.denied'"
                        " AND request_id = :rid"
                    ),
                    {"rid": request_id},
                )
            ]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)  # polling for the entry: the verdict is the assertion on `rows`


def _token_id(estate) -> str:
    parts = split_secret(estate["token"], recipients.TOKEN_PREFIX)
    assert parts is not None
    return parts[0]


def _probe(method: str, url: str, **kwargs) -> tuple[requests.Response, str]:
    rid = f"probe-{uuid.uuid4().hex}"
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": rid}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs), rid


def _one_file(root: Path, pattern: str) -> str:
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    assert found, pattern
    return str(found[0].relative_to(root))


def test_signed_urls_reach_only_data_files_of_tables_the_recipient_may_read(own_estate):
    estate = own_estate
    root = Path(estate["settings"].storage_root).resolve()
    staging = root / "staging"
    staging.mkdir(exist_ok=True)
    (staging / "leftover.parquet").write_bytes(b"PAR1 staged rows PAR1")
    granted = _one_file(root, "products/st-marys/patients/deidentified/*.parquet")
    targets = {
        "raw": _one_file(root, "raw/*"),
        "protected": _one_file(root, "protected/**/*"),
        "staging": "staging/leftover.parquet",
        "other product": _one_file(root, "products/riverside/vitals/deidentified/*.parquet"),
        "other tier": _one_file(root, "products/st-marys/patients/full/*.parquet"),
        "delta log": _one_file(root, "products/st-marys/patients/deidentified/_delta_log/*.json"),
        "dot-dot": f"products/st-marys/patients/deidentified/../full/{Path(granted).name}",
    }
    assert requests.get(_sign(estate, granted), timeout=10).status_code == 200
    for name, relative in targets.items():
        for method in ("GET", "HEAD"):
            answer, rid = _probe(method, _sign(estate, relative))
            if method == "HEAD":  # no body to check
                assert answer.status_code == 403, (name, method)
            else:
                assert_protocol_error(answer, 403)
            (entry,) = _denied(estate, rid)
            assert entry["outcome"] == "denied", name
            if name != "dot-dot":  # clients normalise `..` away, so that signature fails
                assert entry["organization"] == SHARE, name
            assert "X-Amz-Signature=[redacted]" in entry["subject"], name
            assert entry["reason"], name
            assert "PAR1" not in answer.text and str(root) not in answer.text
    # The download's entry names the token the URL was issued to.
    answer, rid = _probe("GET", _sign(estate, granted))
    assert answer.status_code == 200
    with estate["engine"].connect() as conn:
        (token_id,) = conn.execute(
            text("SELECT token_id FROM audit_event WHERE request_id = :rid"), {"rid": rid}
        ).one()
    assert token_id == _token_id(estate)
    # Signed for another recipient (which holds nothing here), the granted file is refused too.
    answer, rid = _probe("GET", _sign(estate, granted, recipient="quality-team"))
    assert_protocol_error(answer, 403)
    assert len(_denied(estate, rid)) == 1


def test_every_kind_of_refusal_is_audited_once_with_the_token_and_route(own_estate):
    estate = own_estate
    base, token = estate["base"], estate["token"]
    auth = {"Authorization": f"Bearer {token}"}
    token_id = _token_id(estate)
    probes = {
        "cross-share": ("GET", f"{base}/delta-sharing/shares/quality-team/schemas", {}),
        "tier guess": (
            "POST",
            f"{base}/delta-sharing/shares/{SHARE}/schemas/st-marys/tables/patients_limited/query",
            {"json": {}},
        ),
        "unpublished version": ("POST", base + QUERY, {"json": {"version": 99}}),
        "bad parameter": ("GET", f"{base}/delta-sharing/shares?maxResults=-1", {}),
    }
    for name, (method, url, kwargs) in probes.items():
        answer, rid = _probe(method, url, headers=auth, **kwargs)
        assert 400 <= answer.status_code < 500 and answer.json()["errorCode"], name
        (entry,) = _denied(estate, rid)
        assert (entry["outcome"], entry["token_id"], entry["organization"]) == (
            "denied",
            token_id,
            SHARE,
        ), name
        assert entry["subject"].startswith(f"{method} /delta-sharing/shares"), name
        assert json.loads(entry["details"])["status"] == answer.status_code
        assert token not in json.dumps(entry, default=str)

    # The official client's guess at another tier: one denied entry more.
    before = _count_denied(estate)
    with pytest.raises(requests.HTTPError):
        delta_sharing.load_as_pandas(f"{estate['profile']}#{SHARE}.st-marys.patients_full")
    assert _wait_count(estate, before + 1) == before + 1

    # A tampered URL (a real one, one digit of the signature changed).
    query = requests.post(base + QUERY, json={}, headers=auth, timeout=10)
    url = json.loads(query.text.splitlines()[2])["file"]["url"]
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    answer, rid = _probe("GET", tampered)
    assert_protocol_error(answer, 403)
    (entry,) = _denied(estate, rid)
    assert entry["reason"] == "bad signature" and "[redacted]" in entry["subject"]
    signature = url.rpartition("X-Amz-Signature=")[2]
    assert signature not in json.dumps(entry, default=str)

    # The allow-list, on the protocol, the file endpoint and an activation link.
    engine = estate["engine"]
    with Session(engine) as session:
        org = get_organization(session, SHARE)
        _, link = recipients.create_activation(
            session, org, token_days=1, valid_for=timedelta(hours=1),
            actor=Operator("cli:test"), now=datetime.now(UTC),
        )  # fmt: skip
        recipients.set_networks(
            session, org, ["10.0.0.0/8"], actor=Operator("cli:test"), now=datetime.now(UTC)
        )
        session.commit()
    try:
        for method, target, headers in (
            ("GET", f"{base}/delta-sharing/shares", auth),
            ("GET", url, {}),
            ("POST", f"{base}/delta-sharing/activation/{link}", {}),
        ):
            answer, rid = _probe(method, target, headers=headers)
            assert_protocol_error(answer, 403)
            (entry,) = _denied(estate, rid)
            assert entry["outcome"] == "denied"
            assert link.rpartition("_")[2] not in json.dumps(entry, default=str)
    finally:
        with Session(engine) as session:
            org = get_organization(session, SHARE)
            recipients.set_networks(
                session, org, [], actor=Operator("cli:t"), now=datetime.now(UTC)
            )
            session.commit()


def _count_denied(estate) -> int:
    with estate["engine"].connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM audit_event WHERE action = 'sharing.denied'")
            ).scalar_one()
        )


def _wait_count(estate, at_least: int) -> int:
    deadline = time.monotonic() + WAIT
    while (count := _count_denied(estate)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_a_flood_of_probes_is_audited_without_failing_or_holding_up_reads(own_estate):
    estate = own_estate
    base, auth = estate["base"], {"Authorization": f"Bearer {estate['token']}"}
    probes, threads = 2000, 8
    before = _count_denied(estate)
    stop = threading.Event()
    reads: list[tuple[int, float]] = []

    def read_meanwhile() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                started = time.monotonic()
                answer = http.post(base + QUERY, json={}, headers=auth, timeout=30)
                reads.append((answer.status_code, time.monotonic() - started))

    def probe(n: int) -> list[int]:
        with requests.Session() as http:
            return [
                http.get(
                    f"{base}/delta-sharing/shares/other-{n}-{i}/schemas", headers=auth, timeout=30
                ).status_code
                for i in range(probes // threads)
            ]

    reader = threading.Thread(target=read_meanwhile, daemon=True)
    reader.start()
    try:
        with ThreadPoolExecutor(threads) as pool:
            statuses = [s for batch in pool.map(probe, range(threads), timeout=600) for s in batch]
    finally:
        stop.set()
        reader.join(timeout=60)
    assert statuses == [404] * probes
    assert reads and all(status == 200 for status, _ in reads)
    assert max(seconds for _, seconds in reads) < 10
    assert _wait_count(estate, before + probes) == before + probes


def test_a_revoked_token_stops_the_file_urls_it_was_given(own_estate):
    """Revoked mid-read: the next range request of a URL issued to the token is refused."""
    estate = own_estate
    with Session(estate["engine"], expire_on_commit=False) as session:
        org = get_organization(session, SHARE)
        token, credential = recipients.issue_recipient_token(
            session, org, days=1, now=datetime.now(UTC)
        )
        session.commit()
    auth = {"Authorization": f"Bearer {credential}"}
    query = requests.post(estate["base"] + QUERY, json={}, headers=auth, timeout=10)
    url = json.loads(query.text.splitlines()[2])["file"]["url"]
    first = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10)
    assert (first.status_code, first.content) == (206, b"PAR1")
    with Session(estate["engine"]) as session:
        recipients.revoke_tokens(
            session, get_organization(session, SHARE), token_id=token.id,
            actor=Operator("cli:test"), now=datetime.now(UTC),
        )  # fmt: skip
        session.commit()
    answer, rid = _probe("GET", url, headers={"Range": "bytes=4-11"})
    assert_protocol_error(answer, 403)
    (entry,) = _denied(estate, rid)
    assert entry["token_id"] == token.id and "revoked" in entry["reason"]
