"""Delta format, change data feed, predicate hints, token rotation, activation and allow-lists.

All through the official client or plain HTTP against the real server (see conftest.py).
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import delta_sharing
import pyarrow as pa
import pytest
import requests
from deltalake import DeltaTable, write_deltalake
from sqlmodel import Session, select

from catalog.audit.record import Operator
from catalog.kernel.db import make_engine
from catalog.products.models import DataProduct
from policies.principals.service import get_organization
from sharing.delta import snapshot
from sharing.protocol import UnsupportedOperation, response_format
from sharing.recipients import service as recipients
from tests.factories import activation_link
from tests.problems import assert_problem, assert_protocol_error

TABLE = "sepsis-research.st-marys.patients"
ADMIN = "admin-secret-for-sharing-tests"


def _table(estate) -> str:
    return str(estate["home"] / "storage" / "products" / "st-marys" / "patients" / "deidentified")


def _base(estate) -> str:
    return f"http://127.0.0.1:{estate['port']}"


def _token(estate) -> str:
    return json.loads(Path(estate["profile"]).read_text())["bearerToken"]


def _sorted(frame):
    return frame.sort_values("patient_id").reset_index(drop=True)


def test_delta_format_reads_the_same_rows_as_parquet(estate):
    url = f"{estate['profile']}#{TABLE}"
    parquet = delta_sharing.load_as_pandas(url, use_delta_format=False)
    delta = delta_sharing.load_as_pandas(url, use_delta_format=True)
    assert list(delta.columns) == list(parquet.columns)
    assert _sorted(delta)["patient_id"].tolist() == _sorted(parquet)["patient_id"].tolist()
    old = delta_sharing.load_as_pandas(url, version=0, use_delta_format=True)
    assert "race_code" not in old.columns
    assert len(delta_sharing.load_as_pandas(url, limit=3, use_delta_format=True)) == 3
    protocol = delta_sharing.get_table_protocol(url)
    assert protocol.min_reader_version >= 1


@pytest.mark.parametrize(
    ("capabilities", "answer"),
    [
        (None, "parquet"),
        ("responseformat=delta,parquet;readerfeatures=deletionvectors,columnmapping", "parquet"),
        ("ResponseFormat=Parquet,Delta", "parquet"),
        ("responseformat=delta;readerfeatures=deletionvectors", "delta"),
    ],
)
def test_format_negotiation_prefers_parquet_for_plain_tables(estate, capabilities, answer):
    headers = {"Authorization": f"Bearer {_token(estate)}"}
    if capabilities:
        headers["delta-sharing-capabilities"] = capabilities
    r = requests.get(
        f"{_base(estate)}/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients"
        "/metadata",
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["delta-sharing-capabilities"] == f"responseformat={answer}"
    first = json.loads(r.text.splitlines()[0])["protocol"]
    assert ("deltaProtocol" in first) == (answer == "delta")


def test_a_format_nobody_speaks_is_refused(estate):
    r = requests.post(
        f"{_base(estate)}/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients"
        "/query",
        json={},
        headers={
            "Authorization": f"Bearer {_token(estate)}",
            "delta-sharing-capabilities": "responseformat=csv",
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["errorCode"] == "UNSUPPORTED_OPERATION"


def test_tables_with_reader_features_answer_only_in_delta_format(tmp_path):
    """timestamp_ntz (a naive `timestamp[us]` column) needs reader v3: parquet cannot carry it."""
    location = str(tmp_path / "naive")
    write_deltalake(
        location, pa.table({"at": pa.array([datetime(2026, 1, 1)], pa.timestamp("us"))})
    )
    snap = snapshot(location, 0, None)
    assert snap.min_reader_version > 1
    assert response_format("responseformat=delta,parquet", snap) == "delta"
    with pytest.raises(UnsupportedOperation, match="timestampNtz.*responseformat=delta"):
        response_format(None, snap)
    plain = str(tmp_path / "plain")
    write_deltalake(plain, pa.table({"n": [1]}))
    assert response_format("responseformat=delta,parquet", snapshot(plain, 0, None)) == ("parquet")


def test_timestamp_time_travel(estate):
    url = f"{estate['profile']}#{TABLE}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    current = delta_sharing.load_as_pandas(url, timestamp=now, use_delta_format=False)
    assert len(current) == len(DeltaTable(_table(estate)).to_pandas())
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(url, timestamp="2001-01-01T00:00:00Z", use_delta_format=False)
    assert_protocol_error(info.value.response, 400)


@pytest.mark.parametrize("use_delta_format", [False, True])
def test_change_data_feed_between_published_versions(estate, use_delta_format):
    url = f"{estate['profile']}#{TABLE}"
    first = DeltaTable(_table(estate), version=0).to_pandas()
    second = DeltaTable(_table(estate), version=1).to_pandas()
    # delta-kernel refuses a range across a schema change (1.1.0 added a column), so the delta
    # format reads version 1 alone; the parquet format reads both.
    start = 1 if use_delta_format else 0
    changes = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=start, ending_version=1, use_delta_format=use_delta_format
    )
    counts = changes.groupby(["_commit_version", "_change_type"]).size().to_dict()
    if not use_delta_format:
        assert counts[(0, "insert")] == len(first)
    assert counts[(1, "insert")] == len(second)
    assert counts[(1, "delete")] == len(first)  # a new version replaces the table's content
    inserted = changes[(changes._commit_version == 1) & (changes._change_type == "insert")]
    assert sorted(inserted["patient_id"]) == sorted(second["patient_id"])


def test_change_feed_errors_are_clear(estate):
    base = f"{_base(estate)}/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients"
    auth = {"Authorization": f"Bearer {_token(estate)}"}
    for query, message in [
        ("", "startingVersion"),
        ("?startingVersion=1&endingVersion=0", "after the end"),
        ("?startingVersion=9", "after the latest"),
        ("?startingVersion=0&startingTimestamp=2026-01-01T00:00:00Z", "exactly one"),
        ("?startingTimestamp=yesterday", "ISO 8601"),
    ]:
        r = requests.get(f"{base}/changes{query}", headers=auth, timeout=10)
        assert_protocol_error(r, 400, message=message)


def test_json_predicate_hints_skip_files_by_stats(estate):
    url = f"{estate['profile']}#{TABLE}"
    everything = delta_sharing.load_as_pandas(url, use_delta_format=False)

    def hint(op, value):
        return json.dumps(
            {
                "op": op,
                "children": [
                    {"op": "column", "name": "birth_date", "valueType": "int"},
                    {"op": "literal", "value": str(value), "valueType": "int"},
                ],
            }
        )

    none = delta_sharing.load_as_pandas(
        url, jsonPredicateHints=hint("greaterThan", 3000), use_delta_format=False
    )
    assert len(none) == 0
    kept = delta_sharing.load_as_pandas(
        url, jsonPredicateHints=hint("greaterThan", 1000), use_delta_format=False
    )
    assert len(kept) == len(everything)
    garbage = delta_sharing.load_as_pandas(
        url, jsonPredicateHints="{not json", use_delta_format=False
    )
    assert len(garbage) == len(everything)  # an unusable hint filters nothing


@pytest.fixture
def session(estate):
    engine = make_engine(estate["settings"].resolved_database_url)
    with Session(engine) as session:
        yield session
        session.commit()
    engine.dispose()


def _shares(base: str, token: str) -> int:
    r = requests.get(
        f"{base}/delta-sharing/shares", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return r.status_code


def test_rotation_keeps_the_old_token_for_the_grace_period_only(estate, session, own_recipient):
    org = get_organization(session, own_recipient.share)
    now = datetime.now(UTC)
    old, old_secret = recipients.issue_recipient_token(session, org, days=30, now=now)
    short, _ = recipients.issue_recipient_token(session, org, days=1, now=now)
    short.expires_at = now + timedelta(minutes=10)
    session.add(short)
    _, new_secret = recipients.rotate_token(
        session, org, days=30, grace=timedelta(hours=1), actor=Operator("cli:test"), now=now
    )
    session.commit()
    assert old.expires_at == now + timedelta(hours=1)  # shortened to the grace period
    assert short.expires_at == now + timedelta(minutes=10)  # never extended
    base = _base(estate)
    assert _shares(base, old_secret) == 200 and _shares(base, new_secret) == 200
    recipients.rotate_token(
        session, org, days=30, grace=timedelta(0), actor=Operator("cli:test"), now=now
    )
    session.commit()
    assert _shares(base, old_secret) == 401 and _shares(base, new_secret) == 401
    assert _shares(base, own_recipient.token) == 401  # the first token was rotated out too
    token, secret = recipients.issue_recipient_token(session, org, days=30, now=datetime.now(UTC))
    session.commit()
    assert _shares(base, secret) == 200
    revoked = recipients.revoke_tokens(
        session, org, token_id=token.id, actor=Operator("cli:test"), now=datetime.now(UTC)
    )
    session.commit()
    assert revoked == [token.id]
    assert _shares(base, secret) == 401
    assert _shares(base, _token(estate)) == 200  # another recipient's token is untouched


def test_activation_link_downloads_the_profile_once(estate, session, own_recipient):
    org = get_organization(session, own_recipient.share)
    link = activation_link(session, org)
    session.commit()
    url = f"{_base(estate)}/delta-sharing/activation/{link}"
    described = requests.get(url, timeout=10)
    assert described.status_code == 200 and described.json()["used"] is False
    first = requests.post(url, timeout=10)
    assert first.status_code == 200
    profile = first.json()
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"].endswith("/delta-sharing")
    path = estate["home"] / f"{own_recipient.share}.share"
    path.write_text(json.dumps(profile))
    client = delta_sharing.SharingClient(str(path))
    assert [s.name for s in client.list_shares()] == [own_recipient.share]
    assert_protocol_error(requests.post(url, timeout=10), 409, message="already used")
    assert_protocol_error(requests.post(url + "x", timeout=10), 404)


def test_network_allow_list_guards_protocol_files_and_activation(estate, session, own_recipient):
    org = get_organization(session, own_recipient.share)
    base = _base(estate)
    auth = {"Authorization": f"Bearer {own_recipient.token}"}
    share = f"{base}/delta-sharing/shares/{own_recipient.share}"
    q = requests.post(
        f"{share}/schemas/st-marys/tables/patients/query", json={}, headers=auth, timeout=10
    )
    file_url = json.loads(q.text.splitlines()[2])["file"]["url"]
    link = activation_link(session, org)
    with pytest.raises(Exception, match="CIDR"):
        recipients.set_networks(
            session, org, ["not-a-network"], actor=Operator("cli:test"), now=datetime.now(UTC)
        )
    recipients.set_networks(
        session, org, ["10.0.0.0/8"], actor=Operator("cli:test"), now=datetime.now(UTC)
    )
    session.commit()
    shares = requests.get(f"{base}/delta-sharing/shares", headers=auth, timeout=10)
    assert_protocol_error(shares, 403)
    assert_protocol_error(requests.get(file_url, timeout=10), 403)
    activation = requests.post(f"{base}/delta-sharing/activation/{link}", timeout=10)
    assert_protocol_error(activation, 403)
    # Another recipient's allow-list is its own.
    shared = {"Authorization": f"Bearer {_token(estate)}"}
    assert (
        requests.get(f"{base}/delta-sharing/shares", headers=shared, timeout=10).status_code == 200
    )
    recipients.set_networks(
        session,
        org,
        ["10.0.0.0/8", "127.0.0.0/8"],
        actor=Operator("cli:test"),
        now=datetime.now(UTC),
    )
    session.commit()
    assert requests.get(f"{base}/delta-sharing/shares", headers=auth, timeout=10).status_code == 200
    assert requests.get(file_url, timeout=10).status_code == 200


def test_recipient_admin_api(estate):
    from typer.testing import CliRunner

    from catalog.cli import app as mesh

    base = _base(estate)
    api = f"{base}/api/v1/recipients/sepsis-research"
    assert_problem(requests.get(f"{api}/tokens", timeout=10), 401)
    runner = CliRunner()
    boot = runner.invoke(mesh, ["admin", "bootstrap", "sharing-admin"], env=estate["env"])
    assert boot.exit_code == 0, boot.output
    admin = {"Authorization": f"Bearer {boot.output.strip().splitlines()[-1]}"}
    consumer = runner.invoke(mesh, ["tokens", "create", "dr-okafor"], env=estate["env"])
    assert consumer.exit_code == 0, consumer.output
    own = {"Authorization": f"Bearer {consumer.output.strip().splitlines()[-1]}"}
    assert_problem(requests.get(f"{api}/tokens", headers=own, timeout=10), 403)

    issued = requests.post(
        f"{api}/tokens", json={"days": 5, "grace_hours": 48}, headers=admin, timeout=10
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["profile"]["bearerToken"].startswith("dsr_")
    assert _shares(base, body["profile"]["bearerToken"]) == 200
    listed = requests.get(f"{api}/tokens", headers=admin, timeout=10).json()
    assert body["token"]["id"] in [t["id"] for t in listed]
    assert all("secret" not in json.dumps(t) for t in listed)
    bad = requests.post(f"{api}/tokens", json={"grace_hours": -1}, headers=admin, timeout=10)
    assert bad.status_code in (400, 422)
    assert bad.headers["content-type"].startswith("application/problem+json")

    revoked = requests.post(
        f"{api}/tokens/revoke", json={"token_id": body["token"]["id"]}, headers=admin, timeout=10
    )
    assert revoked.status_code == 201 and revoked.json() == [body["token"]["id"]]
    assert _shares(base, body["profile"]["bearerToken"]) == 401

    link = requests.post(f"{api}/activation-links", json={}, headers=admin, timeout=10)
    assert link.status_code == 201
    assert link.json()["url"].startswith("http://")
    nets = requests.put(
        f"{api}/networks", json={"cidrs": ["192.168.1.7/24"]}, headers=admin, timeout=10
    )
    assert nets.status_code == 200 and nets.json() == {"cidrs": ["192.168.1.0/24"]}
    cleared = requests.put(f"{api}/networks", json={"cidrs": []}, headers=admin, timeout=10)
    assert cleared.json() == {"cidrs": []}
    unknown = requests.get(f"{base}/api/v1/recipients/nobody/tokens", headers=admin, timeout=10)
    assert_problem(unknown, 404)


def test_a_revoked_grant_stops_new_queries_at_once(estate, session, own_recipient):
    from catalog.kernel.clock import SystemClock
    from policies.grants.models import Grant
    from policies.grants.service import revoke_grant

    base = f"{_base(estate)}/delta-sharing/shares/{own_recipient.share}"
    auth = {"Authorization": f"Bearer {own_recipient.token}"}
    query = f"{base}/schemas/labs/tables/lab-results/query"
    before = requests.post(query, json={}, headers=auth, timeout=10)
    assert before.status_code == 200
    held_url = json.loads(before.text.splitlines()[2])["file"]["url"]
    org = get_organization(session, own_recipient.share)
    grants = session.exec(
        select(Grant).where(Grant.organization_id == org.id, Grant.revoked_at.is_(None))
    ).all()
    for grant in grants:
        product = session.get(DataProduct, grant.product_id)
        if product.name == "lab-results":
            revoke_grant(
                session,
                grant.id,
                reason="study closed",
                actor=Operator("cli:test"),
                clock=SystemClock(),
            )
    session.commit()
    after = requests.post(query, json={}, headers=auth, timeout=10)
    assert_protocol_error(after, 404)
    tables = requests.get(f"{base}/all-tables", headers=auth, timeout=10).json()["items"]
    assert [t["name"] for t in tables] == ["patients"]
    # Local file URLs handed out before the revocation stop with it: the file endpoint serves
    # only tier tables the recipient may read now (object-store URLs live until they expire).
    assert_protocol_error(requests.get(held_url, timeout=10), 403)
    # The shared recipient's grant on the same product is its own.
    shared = {"Authorization": f"Bearer {_token(estate)}"}
    lab_results = "/delta-sharing/shares/sepsis-research/schemas/labs/tables/lab-results/query"
    assert requests.post(f"{_base(estate)}{lab_results}", json={}, headers=shared, timeout=10).ok
    # Another recipient's share looks exactly like one that does not exist.
    for other in ("sepsis-research", "quality-team", "no-such-share"):
        r = requests.get(
            f"{_base(estate)}/delta-sharing/shares/{other}/schemas", headers=auth, timeout=10
        )
        assert_protocol_error(r, 404)


def test_every_read_is_audited_and_accounted_for(estate):
    from typer.testing import CliRunner

    from catalog.cli import app as mesh

    url = f"{estate['profile']}#{TABLE}"
    delta_sharing.load_as_pandas(url, use_delta_format=False)
    runner = CliRunner()
    result = runner.invoke(
        mesh,
        ["audit", "disclosures", "--product", "st-marys/patients", "--format", "json"],
        env=estate["env"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    text = json.dumps(report)
    assert "sepsis-research" in text
    assert "deidentified" in text
    assert "1.1.0" in text  # the product version read
    research = [d for d in report["disclosures"] if d["organization"] == "sepsis-research"]
    # What the answers disclosed, and apart from it what the file endpoint served.
    for key in ("files", "bytes", "downloads", "downloaded_bytes"):
        assert sum(d[key] for d in research) > 0, key
    queries = runner.invoke(
        mesh,
        ["audit", "query", "--action", "sharing.query", "--format", "ndjson", "--limit", "500"],
        env=estate["env"],
    )
    assert queries.exit_code == 0, queries.output
    entries = [json.loads(line) for line in queries.output.splitlines() if line.strip()]
    assert entries
    last = entries[-1] if entries[-1]["at"] >= entries[0]["at"] else entries[0]
    assert last["organization"] == "sepsis-research"
    assert last["product"] == "st-marys/patients"
    assert last["tier"] == "deidentified"
    assert last["request_id"] and last["token_id"]
    assert "dsr_" not in queries.output  # token ids only, never a credential
    verify = runner.invoke(mesh, ["audit", "verify"], env=estate["env"])
    assert verify.exit_code == 0, verify.output
