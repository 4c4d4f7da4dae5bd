"""The official delta-sharing client against the real server on a loopback port."""

import json
from pathlib import Path

import delta_sharing
import pytest
import requests

from sharing.files.urls import RangeNotSatisfiable, byte_range
from tests.problems import assert_protocol_error

HTTP_TIMEOUT = (10, 60)  # (connect, read): bounds a hang, generous on a busy 2-core host


def test_listing(estate):
    client = delta_sharing.SharingClient(estate["profile"])
    assert [s.name for s in client.list_shares()] == ["sepsis-research"]
    tables = client.list_all_tables()
    assert sorted(f"{t.schema}.{t.name}" for t in tables) == [
        "labs.lab-results",
        "st-marys.patients",
    ]
    schemas = client.list_schemas(client.list_shares()[0])
    assert sorted(s.name for s in schemas) == ["labs", "st-marys"]


def test_load_as_pandas_matches_the_published_tier(estate):
    from deltalake import DeltaTable

    url = f"{estate['profile']}#sepsis-research.st-marys.patients"
    frame = delta_sharing.load_as_pandas(url)
    location = estate["home"] / "storage" / "products" / "st-marys" / "patients" / "deidentified"
    expected = DeltaTable(str(location)).to_pandas()
    assert list(frame.columns) == list(expected.columns)
    assert "family_name" not in frame.columns and "mrn" not in frame.columns
    assert sorted(frame["patient_id"]) == sorted(expected["patient_id"])
    assert len(delta_sharing.load_as_pandas(url, limit=5)) == 5
    first = delta_sharing.load_as_pandas(url, version=0)
    assert "race_code" not in first.columns  # version 1.0.0's schema, by time travel
    assert "race_code" in frame.columns
    assert delta_sharing.get_table_version(url) == 1


def test_unknown_and_foreign_tables_look_the_same(estate):
    url = f"{estate['profile']}#sepsis-research.riverside.vitals"
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(url, use_delta_format=False)
    assert_protocol_error(info.value.response, 404)
    with pytest.raises(requests.HTTPError) as info:
        delta_sharing.load_as_pandas(
            f"{estate['profile']}#sepsis-research.riverside.no-such-table", use_delta_format=False
        )
    assert_protocol_error(info.value.response, 404)


def test_bad_tokens_and_tampered_urls(estate):
    base = f"http://127.0.0.1:{estate['port']}/delta-sharing"
    assert_protocol_error(requests.get(f"{base}/shares", timeout=HTTP_TIMEOUT), 401)
    r = requests.get(
        f"{base}/shares", headers={"Authorization": "Bearer dsr_nope_nope"}, timeout=HTTP_TIMEOUT
    )
    assert_protocol_error(r, 401)
    token = json.loads(Path(estate["profile"]).read_text())["bearerToken"]
    q = requests.post(
        f"{base}/shares/sepsis-research/schemas/st-marys/tables/patients/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    assert q.status_code == 200 and q.headers["Delta-Table-Version"] == "1"
    file_url = json.loads(q.text.splitlines()[2])["file"]["url"]
    whole = requests.get(file_url, timeout=HTTP_TIMEOUT)
    assert whole.status_code == 200 and whole.content[:4] == b"PAR1"
    ranged = requests.get(file_url, headers={"Range": "bytes=0-3"}, timeout=HTTP_TIMEOUT)
    assert ranged.status_code == 206 and ranged.content == b"PAR1"
    assert ranged.headers["Content-Range"] == f"bytes 0-3/{len(whole.content)}"
    head = requests.head(file_url, timeout=HTTP_TIMEOUT)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(whole.content))
    assert head.headers["Accept-Ranges"] == "bytes"
    tampered = file_url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert_protocol_error(requests.get(tampered, timeout=HTTP_TIMEOUT), 403)
    other_path = file_url.replace("deidentified", "full")
    assert_protocol_error(requests.get(other_path, timeout=HTTP_TIMEOUT), 403)
    for bad in ("..%2F..%2Fcatalog.db", "../../catalog.db"):
        r = requests.get(
            f"{base}/shares/sepsis-research/schemas/{bad}/tables/x/version",
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT,
        )
        assert r.status_code in (400, 404) and r.status_code < 500
    bad_version = requests.post(
        f"{base}/shares/sepsis-research/schemas/st-marys/tables/patients/query",
        json={"version": 7},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    assert (
        bad_version.status_code == 400
        and bad_version.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    )


def _file_url(estate) -> str:
    token = json.loads(Path(estate["profile"]).read_text())["bearerToken"]
    q = requests.post(
        f"http://127.0.0.1:{estate['port']}/delta-sharing/shares/sepsis-research/schemas/st-marys"
        "/tables/patients/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    return json.loads(q.text.splitlines()[2])["file"]["url"]


def test_file_ranges_follow_rfc_9110(estate):
    url = _file_url(estate)
    whole = requests.get(url, timeout=HTTP_TIMEOUT).content
    size = len(whole)
    tail = requests.get(url, headers={"Range": "bytes=-8"}, timeout=HTTP_TIMEOUT)
    assert tail.status_code == 206 and tail.content == whole[-8:]
    assert tail.headers["Content-Range"] == f"bytes {size - 8}-{size - 1}/{size}"
    open_ended = requests.get(url, headers={"Range": f"Bytes={size - 4}-"}, timeout=HTTP_TIMEOUT)
    assert open_ended.status_code == 206 and open_ended.content == b"PAR1"
    past_end = requests.get(url, headers={"Range": "bytes=0-99999999999"}, timeout=HTTP_TIMEOUT)
    assert past_end.status_code == 206 and past_end.content == whole
    beyond = requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=HTTP_TIMEOUT)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    assert beyond.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
    for ignored in ("bytes=0-1,4-5", "items=0-3", "bytes=9-2", "bytes=1_0-2", "bytes=-"):
        answer = requests.get(url, headers={"Range": ignored}, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200 and answer.content == whole, ignored


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=5-50", 10, (5, 9)),
        (" bytes=1-2 ", 10, (1, 2)),
        ("bytes=2-1", 10, None),
        ("bytes=1-2,4-5", 10, None),
        ("bits=1-2", 10, None),
        ("bytes=+1-2", 10, None),
    ],
)
def test_byte_range(header, size, expected):
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=-1", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable) as info:
        byte_range(header, size)
    assert info.value.headers == {"Content-Range": f"bytes */{size}"}
