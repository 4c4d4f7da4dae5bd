"""deltalake / object_store storage options, read once for every consumer of them.

`MESH_STORAGE_OPTIONS` uses deltalake's option names, which object_store accepts in several
spellings (`AWS_ACCESS_KEY_ID`, `access_key_id`, ...). `provider_options` turns them into one
canonical object_store key each (what obstore's stores take, and what the pyarrow filesystems
of publishing are built from), and `flag` reads a boolean option strictly: a value that is
neither true nor false is refused, never read as false.
"""

from collections.abc import Mapping

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


def provider_of(root: str) -> str | None:
    """`s3`, `azure` or `gcs` for an object-storage root; None for anything else."""
    scheme = root.split("://", 1)[0].lower() if "://" in root else ""
    if scheme in S3_SCHEMES:
        return "s3"
    if scheme in AZURE_SCHEMES:
        return "azure"
    if scheme in GCS_SCHEMES:
        return "gcs"
    return None


PROVIDER_KEYS = {"s3": S3_KEYS, "azure": AZURE_KEYS, "gcs": GCS_KEYS}
PROVIDER_PREFIX = {"s3": "aws_", "azure": "azure_", "gcs": "google_"}


def provider_options(options: Mapping[str, str], provider: str) -> dict[str, str]:
    """The provider's options under their canonical object_store keys (first spelling wins)."""
    table = PROVIDER_KEYS[provider]
    picked: dict[str, str] = {}
    for key, value in options.items():
        name = table.get(key.lower())
        if name is not None:
            picked.setdefault(name, value)
    return picked


def client_options(options: Mapping[str, str], provider: str) -> dict[str, str]:
    """The HTTP client options (`allow_http`, timeouts, proxy), with or without the prefix."""
    prefix = PROVIDER_PREFIX[provider]
    picked: dict[str, str] = {}
    for key, value in options.items():
        name = CLIENT_KEYS.get(key.lower().removeprefix(prefix))
        if name is not None:
            picked.setdefault(name, value)
    return picked


def flag(key: str, value: str | None) -> bool:
    """A boolean option: true/1/yes/on or false/0/no/off (or unset); anything else is refused."""
    text = (value or "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"storage option {key} must be true or false, not {value!r}")
