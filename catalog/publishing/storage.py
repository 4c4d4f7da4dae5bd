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
from catalog.kernel.storage_options import client_options, flag, provider_of, provider_options
from catalog.products.models import RawFileRef

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

    def as_dict(self) -> RawFileRef:
        """JSON shape kept in a version's lineage."""
        return RawFileRef(
            name=self.name, sha256=self.sha256, bytes=self.bytes, resource_type=self.resource_type
        )


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
    provider = provider_of(root)
    if provider is not None:
        picked = provider_options(given, provider) | client_options(given, provider)
        if provider == "s3":
            return _s3(picked), f"{url.netloc}{url.path}".rstrip("/")
        if provider == "azure":
            container, _, host = url.netloc.partition("@")
            return _azure(picked, host), f"{container}{url.path}".rstrip("/")
        return _gcs(picked), f"{url.netloc}{url.path}".rstrip("/")
    filesystem, path = pafs.FileSystem.from_uri(root)
    return filesystem, path


def _true(options: Mapping[str, str], key: str) -> bool:
    return flag(key, options.get(key))


def _endpoint(endpoint: str | None, allow_http: bool) -> tuple[str | None, str]:
    """pyarrow wants `host:port` plus a scheme where object_store takes a URL."""
    if not endpoint:
        return None, "http" if allow_http else "https"
    if "://" in endpoint:
        parsed = urlsplit(endpoint)
        return parsed.netloc, parsed.scheme
    return endpoint.rstrip("/"), "http" if allow_http else "https"


def _s3(options: Mapping[str, str]) -> pafs.FileSystem:
    endpoint, scheme = _endpoint(options.get("endpoint"), _true(options, "allow_http"))
    return pafs.S3FileSystem(
        access_key=options.get("access_key_id"),
        secret_key=options.get("secret_access_key"),
        session_token=options.get("session_token"),
        anonymous=_true(options, "skip_signature"),
        region=options.get("region"),
        scheme=scheme,
        endpoint_override=endpoint,
        role_arn=options.get("role_arn"),
        session_name=options.get("role_session_name"),
        proxy_options=options.get("proxy_url"),
        force_virtual_addressing=_true(options, "virtual_hosted_style_request"),
    )


def _azure(options: Mapping[str, str], host: str) -> pafs.FileSystem:
    account = options.get("account_name") or host.split(".", 1)[0]
    if not account:
        raise ValueError("az:// storage needs AZURE_STORAGE_ACCOUNT_NAME in the storage options")
    authority, scheme = _endpoint(options.get("endpoint"), _true(options, "allow_http"))
    if _true(options, "use_emulator") and authority is None:
        authority, scheme = AZURITE, "http"
    sas = options.get("sas_key")
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
    if options.keys() & {"service_account", "service_account_key", "application_credentials"}:
        raise ValueError(
            "pyarrow's GCS filesystem cannot take a service account from the storage options: "
            "point GOOGLE_APPLICATION_CREDENTIALS at the key file in the environment instead "
            "(deltalake and signing read it from there too)"
        )
    endpoint, scheme = _endpoint(options.get("base_url"), _true(options, "allow_http"))
    return pafs.GcsFileSystem(
        anonymous=_true(options, "skip_signature"),
        scheme=scheme,
        endpoint_override=endpoint,
    )
