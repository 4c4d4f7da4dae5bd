"""One reading of deltalake storage options for publishing (pyarrow) and signing (obstore)."""

import pytest

from catalog.kernel.storage_options import client_options, flag, provider_of, provider_options
from catalog.publishing.storage import remote_filesystem


@pytest.mark.parametrize(
    ("root", "provider"),
    [
        ("s3://b/p", "s3"),
        ("s3a://b", "s3"),
        ("abfss://c@a.dfs.core.windows.net/p", "azure"),
        ("az://c/p", "azure"),
        ("gs://b/p", "gcs"),
        ("/var/mesh", None),
        ("file:///tmp/x", None),
    ],
)
def test_the_provider_comes_from_the_scheme(root, provider):
    assert provider_of(root) == provider


def test_every_spelling_reaches_one_canonical_key():
    given = {
        "AWS_ACCESS_KEY_ID": "k",
        "aws_endpoint_url_s3": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }
    assert provider_options(given, "s3") == {
        "access_key_id": "k",
        "endpoint": "http://127.0.0.1:9000",
    }
    assert client_options(given, "s3") == {"allow_http": "true"}
    assert provider_options({"azure_storage_sas_token": "sv=1"}, "azure") == {"sas_key": "sv=1"}
    assert provider_options({"GOOGLE_BASE_URL": "http://x"}, "gcs") == {"base_url": "http://x"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TRUE", True),
        (" on ", True),
        ("1", True),
        ("false", False),
        ("0", False),
        (None, False),
        ("", False),
    ],
)
def test_a_flag_reads_true_and_false(value, expected):
    assert flag("allow_http", value) is expected


def test_a_flag_that_is_neither_is_refused_not_read_as_false():
    with pytest.raises(
        ValueError, match="storage option allow_http must be true or false, not 'maybe'"
    ):
        flag("allow_http", "maybe")
    with pytest.raises(ValueError, match="must be true or false"):
        remote_filesystem("s3://bucket/p", (("aws_allow_http", "maybe"),))


def test_a_gcs_service_account_in_the_options_is_explained():
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        remote_filesystem("gs://bucket/p", (("google_service_account_key", "{}"),))
