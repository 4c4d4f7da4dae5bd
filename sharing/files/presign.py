"""Native pre-signed GET URLs for data files on S3, Azure Blob Storage and GCS.

On object storage a recipient should download Parquet files straight from the bucket, not
through this server: the URL itself carries a short-lived credential (SigV4, a service SAS, a
V4 signature), so no `Authorization` header is needed, Range requests work, and the URL keeps
the query key delta-kernel looks for before it fetches a URL directly (`X-Amz-Signature`,
`sp`, `X-Goog-Credential`). Signing is local HMAC/RSA work (no request to the cloud once the
credentials are known), so one store is built per storage root and reused for every file.
"""

from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore, GCSStore, S3Store

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, S3Config

SignCapableStore = S3Store | AzureStore | GCSStore

S3_SCHEMES = ("s3", "s3a")
AZURE_SCHEMES = ("az", "azure", "abfs", "abfss", "adl")
GCS_SCHEMES = ("gs",)

# deltalake / object_store option names (lower-cased) -> obstore config keys. Several
# spellings reach the same key because object_store accepts all of them; options that only
# matter to deltalake's writer (AWS_S3_ALLOW_UNSAFE_RENAME, locking, DynamoDB) are ignored.
S3_KEYS = {
    "aws_access_key_id": "access_key_id",
    "access_key_id": "access_key_id",
    "aws_secret_access_key": "secret_access_key",
    "secret_access_key": "secret_access_key",
    "aws_session_token": "session_token",
    "session_token": "session_token",
    "aws_token": "session_token",
    "token": "session_token",
    "aws_region": "region",
    "region": "region",
    "aws_default_region": "region",
    "default_region": "region",
    "aws_endpoint_url": "endpoint",
    "aws_endpoint_url_s3": "endpoint",
    "aws_endpoint": "endpoint",
    "endpoint_url": "endpoint",
    "endpoint": "endpoint",
    "aws_virtual_hosted_style_request": "virtual_hosted_style_request",
    "virtual_hosted_style_request": "virtual_hosted_style_request",
    "aws_request_payer": "request_payer",
    "request_payer": "request_payer",
    "aws_skip_signature": "skip_signature",
    "skip_signature": "skip_signature",
    "aws_role_arn": "role_arn",
    "role_arn": "role_arn",
    "aws_role_session_name": "role_session_name",
    "role_session_name": "role_session_name",
    "aws_web_identity_token_file": "web_identity_token_file",
    "web_identity_token_file": "web_identity_token_file",
    "aws_sts_endpoint": "sts_endpoint",
    "sts_endpoint": "sts_endpoint",
    "aws_metadata_endpoint": "metadata_endpoint",
    "metadata_endpoint": "metadata_endpoint",
    "aws_container_credentials_relative_uri": "container_credentials_relative_uri",
    "container_credentials_relative_uri": "container_credentials_relative_uri",
}
AZURE_KEYS = {
    "azure_storage_account_name": "account_name",
    "azure_storage_account": "account_name",
    "account_name": "account_name",
    "azure_storage_account_key": "account_key",
    "azure_storage_access_key": "account_key",
    "azure_storage_master_key": "account_key",
    "account_key": "account_key",
    "access_key": "account_key",
    "master_key": "account_key",
    "azure_storage_client_id": "client_id",
    "azure_client_id": "client_id",
    "client_id": "client_id",
    "azure_storage_client_secret": "client_secret",
    "azure_client_secret": "client_secret",
    "client_secret": "client_secret",
    "azure_storage_tenant_id": "tenant_id",
    "azure_storage_authority_id": "tenant_id",
    "azure_tenant_id": "tenant_id",
    "azure_authority_id": "tenant_id",
    "tenant_id": "tenant_id",
    "authority_id": "tenant_id",
    "azure_storage_authority_host": "authority_host",
    "azure_authority_host": "authority_host",
    "authority_host": "authority_host",
    "azure_storage_sas_key": "sas_key",
    "azure_storage_sas_token": "sas_key",
    "sas_key": "sas_key",
    "sas_token": "sas_key",
    "azure_storage_token": "token",
    "bearer_token": "token",
    "token": "token",
    "azure_storage_use_emulator": "use_emulator",
    "use_emulator": "use_emulator",
    "azure_storage_endpoint": "endpoint",
    "azure_endpoint": "endpoint",
    "endpoint": "endpoint",
    "azure_msi_endpoint": "msi_endpoint",
    "azure_identity_endpoint": "msi_endpoint",
    "identity_endpoint": "msi_endpoint",
    "msi_endpoint": "msi_endpoint",
    "azure_object_id": "object_id",
    "object_id": "object_id",
    "azure_msi_resource_id": "msi_resource_id",
    "msi_resource_id": "msi_resource_id",
    "azure_federated_token_file": "federated_token_file",
    "federated_token_file": "federated_token_file",
    "azure_use_azure_cli": "use_azure_cli",
    "use_azure_cli": "use_azure_cli",
    "azure_use_fabric_endpoint": "use_fabric_endpoint",
    "use_fabric_endpoint": "use_fabric_endpoint",
    "azure_skip_signature": "skip_signature",
    "skip_signature": "skip_signature",
}
GCS_KEYS = {
    "google_service_account": "service_account",
    "google_service_account_path": "service_account",
    "service_account": "service_account",
    "service_account_path": "service_account",
    "google_service_account_key": "service_account_key",
    "service_account_key": "service_account_key",
    "google_application_credentials": "application_credentials",
    "application_credentials": "application_credentials",
    "google_base_url": "base_url",
    "base_url": "base_url",
    "google_skip_signature": "skip_signature",
    "skip_signature": "skip_signature",
}
# HTTP client options, shared by the three stores (with or without the provider prefix).
CLIENT_KEYS = {
    "allow_http": "allow_http",
    "allow_invalid_certificates": "allow_invalid_certificates",
    "timeout": "timeout",
    "connect_timeout": "connect_timeout",
    "proxy_url": "proxy_url",
    "proxy_ca_certificate": "proxy_ca_certificate",
    "proxy_excludes": "proxy_excludes",
}
BOOL_KEYS = {
    "allow_http",
    "allow_invalid_certificates",
    "virtual_hosted_style_request",
    "request_payer",
    "skip_signature",
    "use_emulator",
    "use_azure_cli",
    "use_fabric_endpoint",
}
TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off", ""}


class UrlSigner(Protocol):
    """Anything that turns the URI of one data file into a URL a recipient can GET."""

    def sign(self, location: str, lifetime_seconds: int) -> str:
        """A URL for `location` valid for `lifetime_seconds`, readable without credentials."""
        ...


class ObjectStoreSigner:
    """Pre-signs GET URLs for objects under one object-storage root with the cloud's own scheme."""

    def __init__(self, storage_root: str, store: SignCapableStore) -> None:
        """`store` must be built for `storage_root` (bucket and prefix included)."""
        self.root = storage_root.rstrip("/")
        self.store = store

    def sign(self, location: str, lifetime_seconds: int) -> str:
        """A pre-signed GET URL for `location`, the absolute URI of one object under the root.

        `location` is a URI, so its path is percent-decoded into the object key (a Delta
        log's `add.path` is stored encoded, e.g. `a=x%2520y/part-0.parquet`). Raises
        ValueError for anything outside the root, so a crafted path cannot sign other keys.
        """
        if lifetime_seconds < 1:
            raise ValueError(f"URL lifetime must be at least one second, not {lifetime_seconds}")
        key = self.key(location)
        return obstore.sign(self.store, "GET", key, timedelta(seconds=lifetime_seconds))

    def key(self, location: str) -> str:
        """The object key of `location` relative to the store's prefix."""
        prefix = f"{self.root}/"
        if not location.startswith(prefix):
            raise ValueError(f"{location!r} is outside the storage root {self.root!r}")
        relative = unquote(location[len(prefix) :])
        parts = relative.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"{location!r} is not a plain object path under {self.root!r}")
        return relative


def object_store_signer(
    storage_root: str, storage_options: Mapping[str, str]
) -> ObjectStoreSigner | None:
    """The signer for an object-storage root; None for a local folder or `file://` root.

    Cached per (root, options): building a store parses credentials (and may fetch them from
    the environment), signing afterwards is local and takes microseconds.
    """
    root = storage_root.rstrip("/")
    if "://" not in root or root.startswith("file://"):
        return None
    return _cached_signer(root, tuple(sorted(storage_options.items())))


@lru_cache(maxsize=32)
def _cached_signer(root: str, options: tuple[tuple[str, str], ...]) -> ObjectStoreSigner:
    return ObjectStoreSigner(root, build_store(root, dict(options)))


def build_store(root: str, storage_options: Mapping[str, str]) -> SignCapableStore:
    """An obstore store for `root` configured from deltalake-style storage options."""
    scheme = root.split("://", 1)[0].lower()
    lowered = {key.lower(): value for key, value in storage_options.items()}
    try:
        if scheme in S3_SCHEMES:
            if "aws_profile" in lowered and not _has(lowered, S3_KEYS, "access_key_id"):
                raise ValueError(
                    "AWS_PROFILE cannot be used for pre-signed URLs: give AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or rely on environment / web-identity / instance "
                    "credentials"
                )
            return S3Store.from_url(
                root,
                config=cast("S3Config", _config(lowered, S3_KEYS)),
                client_options=cast("ClientConfig", _client(lowered, "aws_")),
            )
        if scheme in AZURE_SCHEMES:
            return AzureStore.from_url(
                root,
                config=cast("AzureConfig", _config(lowered, AZURE_KEYS)),
                client_options=cast("ClientConfig", _client(lowered, "azure_")),
            )
        if scheme in GCS_SCHEMES:
            return GCSStore.from_url(
                root,
                config=cast("GCSConfig", _config(lowered, GCS_KEYS)),
                client_options=cast("ClientConfig", _client(lowered, "google_")),
            )
    except ObstoreError as exc:
        raise ValueError(f"cannot pre-sign URLs under {root!r}: {exc}") from exc
    raise ValueError(f"cannot pre-sign URLs for {scheme}:// storage (use s3, az/abfss or gs)")


def _has(options: Mapping[str, str], table: Mapping[str, str], target: str) -> bool:
    return any(table.get(key) == target for key in options)


def _config(options: Mapping[str, str], table: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in options.items():
        if key in table:
            name = table[key]
            config[name] = _bool(key, value) if name in BOOL_KEYS else value
    return config


def _client(options: Mapping[str, str], provider_prefix: str) -> dict[str, Any]:
    client: dict[str, Any] = {}
    for key, value in options.items():
        name = CLIENT_KEYS.get(key.removeprefix(provider_prefix))
        if name is not None:
            client[name] = _bool(key, value) if name in BOOL_KEYS else value
    return client


def _bool(key: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"storage option {key} must be true or false, not {value!r}")
