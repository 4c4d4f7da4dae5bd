"""Native pre-signed URLs against a real S3-compatible server (moto), Azure and GCS offline.

moto checks that a GET without a signature is refused (private objects) but does not verify
SigV4 itself, so the S3 signature is also recomputed here from the secret key; the GCS V4
signature is verified with the service account's public key.
"""

import base64
import hashlib
import hmac
import io
import json
import uuid
from datetime import datetime
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import boto3
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from delta_sharing.protocol import AddFile
from delta_sharing.reader import DeltaSharingReader
from deltalake import DeltaTable, write_deltalake
from moto.server import ThreadedMotoServer

from catalog.publishing.storage import Storage, remote_filesystem
from sharing.files.presign import ObjectStoreSigner, UrlSigner, build_store, object_store_signer

ACCESS_KEY = "AKIAMESHTEST0000"
SECRET_KEY = "mesh-test-secret"
LIFETIME = 900


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port with one empty bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"mesh-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    yield {
        "endpoint": endpoint,
        "bucket": bucket,
        "root": f"s3://{bucket}/root",
        "options": options,
    }
    server.stop()


@pytest.fixture(scope="module")
def table(s3):
    """A real Delta table written by deltalake to the bucket, in two commits (two files)."""
    uri = f"{s3['root']}/products/d/p/full"
    first = pa.table({"patient_id": ["a", "b", "c"], "lactate": [1.5, 2.0, None]})
    second = pa.table({"patient_id": ["d"], "lactate": [4.25]})
    write_deltalake(uri, first, storage_options=s3["options"])
    write_deltalake(uri, second, mode="append", storage_options=s3["options"])
    files = DeltaTable(uri, storage_options=s3["options"]).file_uris()
    assert len(files) == 2
    return {"uri": uri, "files": files, "rows": pa.concat_tables([first, second])}


def _signed_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical(url: str, signature_param: str) -> str:
    """The V4 canonical request of a pre-signed GET (same rules for S3 SigV4 and GCS V4)."""
    parts = urlsplit(url)
    query = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k != signature_param
    )
    canonical_query = "&".join(f"{k}={v}" for k, v in query)
    return "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )


def _query(url: str) -> dict[str, str]:
    """The query parameters of `url`, each with its first value."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _signed_part(root: str, options: dict[str, str]) -> str:
    """The URL of a data file under `root`, signed with the store `options`."""
    signer = object_store_signer(root, options)
    assert signer is not None
    return signer.sign(f"{root}/products/d/p/full/part-0.parquet", LIFETIME)


def _assert_sigv4(url: str, secret: str) -> None:
    query = _query(url)
    _, date, region, service, _ = query["X-Amz-Credential"].split("/")
    digest = hashlib.sha256(_canonical(url, "X-Amz-Signature").encode()).hexdigest()
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{query['X-Amz-Date']}\n{scope}\n{digest}"
    key = _signed_key(secret, date, region, service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert query["X-Amz-Signature"] == expected


def test_signed_s3_urls_download_every_data_file_without_credentials(s3, table):
    signer = object_store_signer(s3["root"], s3["options"])
    assert isinstance(signer, ObjectStoreSigner)
    pieces = []
    with httpx.Client(timeout=10) as client:
        for location in table["files"]:
            url = signer.sign(location, LIFETIME)
            query = parse_qs(urlsplit(url).query)
            assert query["X-Amz-Expires"] == [str(LIFETIME)]
            assert "X-Amz-Signature" in query
            assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY}/")
            assert url.startswith(f"{s3['endpoint']}/{s3['bucket']}/root/products/d/p/full/")
            _assert_sigv4(url, SECRET_KEY)

            response = client.get(url)
            assert response.status_code == 200, response.text
            assert "authorization" not in {k.lower() for k in response.request.headers}
            assert response.content[:4] == b"PAR1"
            pieces.append(pq.read_table(io.BytesIO(response.content)))

            ranged = client.get(url, headers={"Range": "bytes=0-3"})
            assert ranged.status_code == 206
            assert ranged.content == b"PAR1"
            size = len(response.content)
            tail = client.get(url, headers={"Range": f"bytes={size - 8}-{size - 1}"})
            assert tail.status_code == 206
            assert tail.content == response.content[-8:]
            assert tail.content.endswith(b"PAR1")

            unsigned = client.get(url.split("?", 1)[0])
            assert unsigned.status_code == 403
    got = pa.concat_tables(pieces).sort_by("patient_id")
    assert got.column("lactate").to_pylist() == table["rows"].column("lactate").to_pylist()


def test_the_official_clients_parquet_reader_reads_signed_s3_urls(s3, table):
    """The client's own per-file reader (fsspec + pyarrow, what the parquet format uses).

    Ranged GETs on the store's native URLs. (fsspec first asks HEAD for the size; real S3
    refuses HEAD on a URL signed for GET and fsspec falls back to GET, which moto, not checking
    signatures, cannot show.)
    """
    signer = object_store_signer(s3["root"], s3["options"])
    assert signer is not None
    frames = [
        DeltaSharingReader._to_pandas(
            AddFile(url=signer.sign(location, LIFETIME), id=location, partition_values={}, size=0),
            converters={},
            for_cdf=False,
            limit=None,
            convert_in_batches=False,
        )
        for location in table["files"]
    ]
    got = pd.concat(frames, ignore_index=True).sort_values("patient_id")
    assert got["patient_id"].tolist() == ["a", "b", "c", "d"]
    assert got["lactate"].fillna(-1.0).tolist() == [1.5, 2.0, -1.0, 4.25]  # the null survives


def test_percent_encoded_delta_paths_sign_the_stored_key(s3):
    """A Delta log stores add.path URI-encoded; the signer decodes it into the object key."""
    uri = f"{s3['root']}/products/d/partitioned/full"
    write_deltalake(
        uri,
        pa.table({"site": ["x y", "p%q"], "n": [1, 2]}),
        partition_by=["site"],
        storage_options=s3["options"],
    )
    dt = DeltaTable(uri, storage_options=s3["options"])
    paths = pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()
    assert any("%25" in p for p in paths)  # encoded in the log
    signer = object_store_signer(s3["root"], s3["options"])
    assert signer is not None
    for path in paths:
        response = httpx.get(signer.sign(f"{uri}/{path}", LIFETIME), timeout=10)
        assert response.status_code == 200, (path, response.text)
        assert pq.read_table(io.BytesIO(response.content)).num_rows == 1


@pytest.mark.parametrize(
    "location",
    [
        "s3://other-bucket/root/products/d/p/full/part-0.parquet",
        "s3://{bucket}/root2/products/d/p/full/part-0.parquet",
        "s3://{bucket}/elsewhere/part-0.parquet",
        "s3://{bucket}/root",
        "s3://{bucket}/root/",
        "s3://{bucket}/root/products/../../secret.parquet",
        "s3://{bucket}/root/products/%2E%2E/%2E%2E/secret.parquet",
        "s3://{bucket}/root/products//part-0.parquet",
        "gs://{bucket}/root/part-0.parquet",
        "/tmp/root/part-0.parquet",
    ],
)
def test_locations_outside_the_root_are_refused(s3, location):
    signer = object_store_signer(s3["root"], s3["options"])
    assert signer is not None
    with pytest.raises(ValueError, match="root"):
        signer.sign(location.format(bucket=s3["bucket"]), LIFETIME)


def test_signer_is_cached_and_absent_for_local_roots(s3, tmp_path):
    assert object_store_signer(str(tmp_path), {}) is None
    assert object_store_signer(f"file://{tmp_path}", {"AWS_REGION": "x"}) is None
    first = object_store_signer(s3["root"], s3["options"])
    assert object_store_signer(s3["root"] + "/", dict(reversed(s3["options"].items()))) is first
    signer: UrlSigner | None = first
    assert signer is not None
    with pytest.raises(ValueError, match="lifetime"):
        signer.sign(f"{s3['root']}/x.parquet", 0)
    with pytest.raises(ValueError, match="hdfs"):
        object_store_signer("hdfs://namenode/root", {})


def test_option_spellings_map_onto_the_store_config():
    upper = build_store(
        "s3://b/r",
        {
            "AWS_ACCESS_KEY_ID": "ak",
            "AWS_SECRET_ACCESS_KEY": "sk",
            "AWS_SESSION_TOKEN": "st",
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
            "AWS_S3_LOCKING_PROVIDER": "dynamodb",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        },
    )
    lower = build_store(
        "s3://b/r",
        {
            "access_key_id": "ak",
            "secret_access_key": "sk",
            "aws_token": "st",
            "region": "eu-west-1",
            "endpoint": "http://minio:9000",
            "aws_allow_http": "1",
        },
    )
    for store in (upper, lower):
        config = store.config
        assert config["access_key_id"] == "ak"
        assert config["secret_access_key"] == "sk"
        assert config["session_token"] == "st"
        assert config["region"] == "eu-west-1"
        assert config["endpoint"] == "http://minio:9000"
        assert config["bucket"] == "b"
        assert store.prefix == "r"
    assert lower.client_options is not None
    assert str(lower.client_options["allow_http"]).lower() == "true"
    with pytest.raises(ValueError, match="true or false"):
        build_store("s3://b/r", {"AWS_ALLOW_HTTP": "maybe"})
    with pytest.raises(ValueError, match="AWS_PROFILE"):
        build_store("s3://b/r", {"AWS_PROFILE": "prod"})
    with pytest.raises(ValueError, match="cannot pre-sign"):
        build_store("s3://b/r", {"AWS_ACCESS_KEY_ID": "only-half"})


AZURE_KEY = base64.b64encode(b"mesh-test-azure-account-key-0123456789abcdef").decode()


@pytest.mark.parametrize(
    ("root", "options"),
    [
        (
            "az://lake/root",
            {"AZURE_STORAGE_ACCOUNT_NAME": "meshacct", "AZURE_STORAGE_ACCOUNT_KEY": AZURE_KEY},
        ),
        (
            "abfss://lake@meshacct.dfs.core.windows.net/root",
            {"azure_storage_account_name": "meshacct", "account_key": AZURE_KEY},
        ),
    ],
)
def test_azure_signing_is_a_read_only_service_sas(root, options):
    url = _signed_part(root, options)
    parts, query = urlsplit(url), _query(url)
    assert parts.scheme == "https"
    assert parts.netloc == "meshacct.blob.core.windows.net"
    assert parts.path == "/lake/root/products/d/p/full/part-0.parquet"
    assert query["sp"] == "r"
    assert query["sr"] == "b"
    assert query["sig"]
    start = datetime.fromisoformat(query["st"].replace("Z", "+00:00"))
    expiry = datetime.fromisoformat(query["se"].replace("Z", "+00:00"))
    assert (expiry - start).total_seconds() == LIFETIME
    # a service SAS: HMAC-SHA256 of the string-to-sign (version 2023-11-03) with the account key
    resource = "/blob/meshacct/lake/root/products/d/p/full/part-0.parquet"
    fields = [query["sp"], query["st"], query["se"], resource, "", "", "", query["sv"], query["sr"]]
    to_sign = "\n".join(fields + [""] * 7)
    expected = hmac.new(base64.b64decode(AZURE_KEY), to_sign.encode(), hashlib.sha256).digest()
    assert query["sig"] == base64.b64encode(expected).decode()


@pytest.fixture(scope="module")
def service_account():
    """A locally generated service-account key; nothing is sent to Google."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "mesh-test",
        "private_key_id": "kid-1",
        "private_key": pem,
        "client_email": "sharing@mesh-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }
    return {"json": json.dumps(info), "public_key": key.public_key(), "email": info["client_email"]}


@pytest.mark.parametrize("option", ["GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_SERVICE_ACCOUNT"])
def test_gcs_signing_is_v4_with_the_service_account_key(service_account, option, tmp_path):
    if option == "GOOGLE_SERVICE_ACCOUNT":
        path = tmp_path / "sa.json"
        path.write_text(service_account["json"])
        value = str(path)
    else:
        value = service_account["json"]
    root = "gs://mesh-bucket/root"
    url = _signed_part(root, {option: value})
    parts, query = urlsplit(url), _query(url)
    assert parts.netloc == "storage.googleapis.com"
    assert parts.path == "/mesh-bucket/root/products/d/p/full/part-0.parquet"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith(f"{service_account['email']}/")
    assert query["X-Goog-Expires"] == str(LIFETIME)
    digest = hashlib.sha256(_canonical(url, "X-Goog-Signature").encode()).hexdigest()
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = f"GOOG4-RSA-SHA256\n{query['X-Goog-Date']}\n{scope}\n{digest}"
    service_account["public_key"].verify(
        bytes.fromhex(query["X-Goog-Signature"]),
        to_sign.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_storage_lands_raw_files_on_s3_with_options_from_settings(s3, tmp_path):
    root = f"s3://{s3['bucket']}/landing"
    storage = Storage(root=root, options=dict(s3["options"]))
    source = tmp_path / "Patient.ndjson"
    payload = b'{"resourceType":"Patient","id":"p1"}\n' * 1000
    source.write_bytes(payload)

    raw = storage.land(source, name="Patient.ndjson", resource_type="Patient")
    assert raw.sha256 == hashlib.sha256(payload).hexdigest()
    assert raw.bytes == len(payload)
    assert storage.has_raw(raw.sha256)
    with storage.open_raw(raw.sha256) as stream:
        assert stream.read() == payload
    again = storage.land(source, name="again.ndjson")
    assert again.sha256 == raw.sha256

    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=s3["bucket"], Prefix="landing/")["Contents"]
    ]
    assert f"landing/raw/{raw.sha256}" in keys
    assert not [k for k in keys if ".incoming-" in k]
    body = client.get_object(Bucket=s3["bucket"], Key=f"landing/raw/{raw.sha256}")["Body"].read()
    assert body == payload

    filesystem, path = storage.staging_path()
    assert path.startswith(f"{s3['bucket']}/landing/staging/")
    staged = pa.table({"id": ["p1", "p2"]})
    pq.write_table(staged, path, filesystem=filesystem)
    assert pq.read_table(path, filesystem=filesystem).equals(staged)


@pytest.mark.parametrize(
    ("root", "options", "expected", "path"),
    [
        (
            "s3://b/r",
            {
                "aws_access_key_id": "ak",
                "AWS_SECRET_ACCESS_KEY": "sk",
                "AWS_REGION": "eu-west-1",
                "AWS_ENDPOINT_URL": "minio:9000",
                "AWS_ALLOW_HTTP": "true",
            },
            {
                "access_key": "ak",
                "secret_key": "sk",
                "region": "eu-west-1",
                "endpoint_override": "minio:9000",
                "scheme": "http",
            },
            "b/r",
        ),
        (
            "s3a://b",
            {
                "access_key_id": "ak",
                "secret_access_key": "sk",
                "AWS_ENDPOINT_URL": "https://s3.example.org/",
                "AWS_SESSION_TOKEN": "st",
                "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true",
            },
            {
                "endpoint_override": "s3.example.org",
                "scheme": "https",
                "session_token": "st",
                "force_virtual_addressing": True,
            },
            "b",
        ),
        (
            "abfss://lake@meshacct.dfs.core.windows.net/root",
            {"AZURE_STORAGE_ACCOUNT_KEY": AZURE_KEY},
            {"account_name": "meshacct", "account_key": AZURE_KEY},
            "lake/root",
        ),
        (
            "az://lake/root",
            {
                "azure_storage_account_name": "devstoreaccount1",
                "AZURE_STORAGE_USE_EMULATOR": "true",
                "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x",
            },
            {
                "account_name": "devstoreaccount1",
                "blob_storage_authority": "127.0.0.1:10000",
                "blob_storage_scheme": "http",
                "sas_token": "sv=1&sig=x",
            },
            "lake/root",
        ),
        (
            "gs://bkt/root",
            {"GOOGLE_BASE_URL": "http://127.0.0.1:4443"},
            {"endpoint_override": "127.0.0.1:4443", "scheme": "http"},
            "bkt/root",
        ),
    ],
)
def test_pyarrow_filesystem_takes_the_storage_options(root, options, expected, path):
    filesystem, base = remote_filesystem(root, tuple(sorted(options.items())))
    _, (state,) = filesystem.__reduce__()
    assert {k: state[k] for k in expected} == expected
    assert base == path


def test_gcs_service_account_options_are_refused_by_pyarrow_with_a_reason():
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        remote_filesystem("gs://bkt/root", (("GOOGLE_SERVICE_ACCOUNT", "/keys/sa.json"),))
