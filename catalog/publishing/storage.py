"""Where product data lives: content-addressed raw payloads and one Delta table per tier.

Everything goes through pyarrow filesystems and deltalake storage options, so the same code
writes to a local folder, `s3://`, `az://` or `gs://` (credentials from settings or the
environment, as those libraries read them).
"""

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pyarrow as pa
from pyarrow import fs as pafs

from catalog.kernel.settings import Settings

CHUNK = 1 << 20


PRODUCTS = "products"  # <root>/products/<domain>/<product>/<tier>/: one Delta table per tier
STAGING = "staging"  # <root>/staging/: a running publish's full rows; never served
INCOMING = ".incoming-"  # raw/.incoming-*: a payload being landed, renamed when complete


def tier_table_of(relative: str) -> tuple[str, str] | None:
    """`("domain/product", tier)` of a file below the root (`Storage.table_uri`'s layout), or
    None for a path outside the tier tables."""
    parts = relative.split("/")
    if len(parts) > 4 and parts[0] == PRODUCTS:
        return f"{parts[1]}/{parts[2]}", parts[3]
    return None


@dataclass(frozen=True)
class RawFile:
    """A landed source file: its original name, content hash and size."""

    name: str
    sha256: str
    bytes: int
    resource_type: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON shape kept in a version's lineage."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "resource_type": self.resource_type,
        }


@dataclass(frozen=True)
class Storage:
    """The storage root of the estate and how to reach it."""

    root: str
    options: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> "Storage":
        """The configured storage root (a local folder by default)."""
        return cls(root=settings.storage_root.rstrip("/"), options=dict(settings.storage_options))

    @property
    def is_local(self) -> bool:
        """True for a plain folder."""
        return "://" not in self.root or self.root.startswith("file://")

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem of the root and the root's path on it."""
        if self.is_local:
            root = self.root.removeprefix("file://")
            Path(root).mkdir(mode=0o700, parents=True, exist_ok=True)
            return pafs.LocalFileSystem(), str(Path(root).resolve())
        return remote_filesystem(self.root, tuple(sorted(self.options.items())))

    def table_uri(self, domain: str, product: str, tier: str) -> str:
        """The Delta table of one tier of a product."""
        return f"{self.product_uri(domain, product)}/{tier}"

    def product_uri(self, domain: str, product: str) -> str:
        """The folder of a product's tier tables."""
        return f"{self.root}/{PRODUCTS}/{domain}/{product}"

    def raw_path(self, sha256: str) -> str:
        """Filesystem path of a landed raw payload."""
        _, base = self.filesystem()
        return f"{base}/raw/{sha256}"

    def land(self, source: Path, *, name: str, resource_type: str | None = None) -> RawFile:
        """Copy `source` into `raw/<sha256>` unless already there; never overwrite."""
        filesystem, base = self.filesystem()
        filesystem.create_dir(f"{base}/raw", recursive=True)
        temp = f"{base}/raw/{INCOMING}{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as reader, filesystem.open_output_stream(temp) as writer:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        final = f"{base}/raw/{sha}"
        if filesystem.get_file_info(final).type == pafs.FileType.NotFound:
            filesystem.move(temp, final)
            if self.is_local:
                Path(final).chmod(0o400)  # read-only, owner only
        else:
            filesystem.delete_file(temp)
        return RawFile(name=name, sha256=sha, bytes=size, resource_type=resource_type)

    @contextmanager
    def open_raw(self, sha256: str) -> Iterator[IO[bytes]]:
        """Read a landed payload."""
        filesystem, base = self.filesystem()
        with filesystem.open_input_stream(f"{base}/raw/{sha256}") as stream:
            yield stream

    @contextmanager
    def open_raw_file(self, sha256: str) -> Iterator[pa.NativeFile]:
        """Random access to a landed payload (Parquet needs to seek)."""
        filesystem, base = self.filesystem()
        with filesystem.open_input_file(f"{base}/raw/{sha256}") as handle:
            yield handle

    def has_raw(self, sha256: str) -> bool:
        """True when the payload is in raw storage."""
        filesystem, base = self.filesystem()
        return bool(filesystem.get_file_info(f"{base}/raw/{sha256}").type != pafs.FileType.NotFound)

    def clear_leftovers(self) -> list[str]:
        """Delete what crashed publishes left behind: staging files and unfinished landings.

        A publish deletes its own staging file when it ends, but a killed process cannot, and a
        staging file holds the full tier (every source id). Only call this holding the publish
        lock: every staging file and `raw/.incoming-*` then belongs to a publish that is gone.
        Returns the paths deleted.
        """
        filesystem, base = self.filesystem()
        gone: list[str] = []
        for folder, keep in ((f"{base}/{STAGING}", None), (f"{base}/raw", INCOMING)):
            selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
            for info in filesystem.get_file_info(selector):
                if keep is not None and not info.base_name.startswith(keep):
                    continue
                if info.type == pafs.FileType.Directory:
                    filesystem.delete_dir(info.path)
                else:
                    filesystem.delete_file(info.path)
                gone.append(info.path)
        return gone

    def staging_path(self) -> tuple[pafs.FileSystem, str]:
        """A fresh path for a publish's intermediate Parquet file."""
        filesystem, base = self.filesystem()
        filesystem.create_dir(f"{base}/{STAGING}", recursive=True)
        return filesystem, f"{base}/{STAGING}/{uuid.uuid4().hex}.parquet"


# deltalake storage option spellings (lower-cased) for what pyarrow's filesystems can take.
S3_OPTIONS = {
    "access_key": ("aws_access_key_id", "access_key_id"),
    "secret_key": ("aws_secret_access_key", "secret_access_key"),
    "session_token": ("aws_session_token", "session_token", "aws_token", "token"),
    "region": ("aws_region", "region", "aws_default_region", "default_region"),
    "endpoint": (
        "aws_endpoint_url_s3",
        "aws_endpoint_url",
        "aws_endpoint",
        "endpoint_url",
        "endpoint",
    ),
    "allow_http": ("aws_allow_http", "allow_http"),
    "virtual_hosted": ("aws_virtual_hosted_style_request", "virtual_hosted_style_request"),
    "role_arn": ("aws_role_arn", "role_arn"),
    "session_name": ("aws_role_session_name", "role_session_name"),
    "anonymous": ("aws_skip_signature", "skip_signature"),
    "proxy": ("aws_proxy_url", "proxy_url"),
}
AZURE_OPTIONS = {
    "account_name": ("azure_storage_account_name", "azure_storage_account", "account_name"),
    "account_key": (
        "azure_storage_account_key",
        "azure_storage_access_key",
        "azure_storage_master_key",
        "account_key",
        "access_key",
        "master_key",
    ),
    "sas_token": ("azure_storage_sas_key", "azure_storage_sas_token", "sas_key", "sas_token"),
    "client_id": ("azure_storage_client_id", "azure_client_id", "client_id"),
    "client_secret": ("azure_storage_client_secret", "azure_client_secret", "client_secret"),
    "tenant_id": (
        "azure_storage_tenant_id",
        "azure_storage_authority_id",
        "azure_tenant_id",
        "azure_authority_id",
        "tenant_id",
        "authority_id",
    ),
    "endpoint": ("azure_storage_endpoint", "azure_endpoint", "endpoint"),
    "use_emulator": ("azure_storage_use_emulator", "use_emulator"),
    "allow_http": ("azure_allow_http", "allow_http"),
}
GCS_OPTIONS = {
    "endpoint": ("google_base_url", "base_url"),
    "anonymous": ("google_skip_signature", "skip_signature"),
    "allow_http": ("google_allow_http", "allow_http"),
    "service_account": (
        "google_service_account",
        "google_service_account_path",
        "service_account",
        "service_account_path",
        "google_service_account_key",
        "service_account_key",
        "google_application_credentials",
        "application_credentials",
    ),
}
AZURITE = "127.0.0.1:10000"


@lru_cache(maxsize=16)
def remote_filesystem(
    root: str, options: tuple[tuple[str, str], ...]
) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for an object-storage root, built from the deltalake options.

    `FileSystem.from_uri` would only see the URI (and the environment), so credentials and
    endpoints given in `MESH_STORAGE_OPTIONS` must be handed over explicitly; cached because
    every raw landing and staging call asks for it.
    """
    given = {key.lower(): value for key, value in options}
    url = urlsplit(root)
    scheme = url.scheme.lower()
    if scheme in ("s3", "s3a"):
        return _s3(_pick(given, S3_OPTIONS)), f"{url.netloc}{url.path}".rstrip("/")
    if scheme in ("az", "azure", "abfs", "abfss"):
        container, _, host = url.netloc.partition("@")
        return _azure(_pick(given, AZURE_OPTIONS), host), f"{container}{url.path}".rstrip("/")
    if scheme == "gs":
        return _gcs(_pick(given, GCS_OPTIONS)), f"{url.netloc}{url.path}".rstrip("/")
    filesystem, path = pafs.FileSystem.from_uri(root)
    return filesystem, path


def _pick(given: Mapping[str, str], spellings: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    picked: dict[str, str] = {}
    for name, keys in spellings.items():
        for key in keys:
            if key in given:
                picked[name] = given[key]
                break
    return picked


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on")


def _endpoint(endpoint: str | None, allow_http: bool) -> tuple[str | None, str]:
    """pyarrow wants `host:port` plus a scheme where object_store takes a URL."""
    if not endpoint:
        return None, "http" if allow_http else "https"
    if "://" in endpoint:
        parsed = urlsplit(endpoint)
        return parsed.netloc, parsed.scheme
    return endpoint.rstrip("/"), "http" if allow_http else "https"


def _s3(options: Mapping[str, str]) -> pafs.FileSystem:
    endpoint, scheme = _endpoint(options.get("endpoint"), _true(options.get("allow_http")))
    return pafs.S3FileSystem(
        access_key=options.get("access_key"),
        secret_key=options.get("secret_key"),
        session_token=options.get("session_token"),
        anonymous=_true(options.get("anonymous")),
        region=options.get("region"),
        scheme=scheme,
        endpoint_override=endpoint,
        role_arn=options.get("role_arn"),
        session_name=options.get("session_name"),
        proxy_options=options.get("proxy"),
        force_virtual_addressing=_true(options.get("virtual_hosted")),
    )


def _azure(options: Mapping[str, str], host: str) -> pafs.FileSystem:
    account = options.get("account_name") or host.split(".", 1)[0]
    if not account:
        raise ValueError("az:// storage needs AZURE_STORAGE_ACCOUNT_NAME in the storage options")
    authority, scheme = _endpoint(options.get("endpoint"), _true(options.get("allow_http")))
    if _true(options.get("use_emulator")) and authority is None:
        authority, scheme = AZURITE, "http"
    sas = options.get("sas_token")
    return pafs.AzureFileSystem(
        account,
        account_key=options.get("account_key"),
        sas_token=sas.lstrip("?") if sas else None,
        client_id=options.get("client_id"),
        client_secret=options.get("client_secret"),
        tenant_id=options.get("tenant_id"),
        blob_storage_authority=authority,
        dfs_storage_authority=authority,
        blob_storage_scheme=scheme,
        dfs_storage_scheme=scheme,
    )


def _gcs(options: Mapping[str, str]) -> pafs.FileSystem:
    if "service_account" in options:
        raise ValueError(
            "pyarrow's GCS filesystem cannot take a service account from the storage options: "
            "point GOOGLE_APPLICATION_CREDENTIALS at the key file in the environment instead "
            "(deltalake and signing read it from there too)"
        )
    endpoint, scheme = _endpoint(options.get("endpoint"), _true(options.get("allow_http")))
    return pafs.GcsFileSystem(
        anonymous=_true(options.get("anonymous")),
        scheme=scheme,
        endpoint_override=endpoint,
    )
