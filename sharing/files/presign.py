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

from catalog.kernel.storage_options import (
    BOOL_KEYS,
    S3_KEYS,
    client_options,
    flag,
    provider_of,
    provider_options,
)

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, S3Config

SignCapableStore = S3Store | AzureStore | GCSStore


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
    provider = provider_of(root)
    lowered = {key.lower(): value for key, value in storage_options.items()}
    try:
        if provider == "s3":
            if "aws_profile" in lowered and not _has(lowered, S3_KEYS, "access_key_id"):
                raise ValueError(
                    "AWS_PROFILE cannot be used for pre-signed URLs: give AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or rely on environment / web-identity / instance "
                    "credentials"
                )
            return S3Store.from_url(
                root,
                config=cast("S3Config", _typed(provider_options(lowered, provider))),
                client_options=cast("ClientConfig", _typed(client_options(lowered, provider))),
            )
        if provider == "azure":
            return AzureStore.from_url(
                root,
                config=cast("AzureConfig", _typed(provider_options(lowered, provider))),
                client_options=cast("ClientConfig", _typed(client_options(lowered, provider))),
            )
        if provider == "gcs":
            return GCSStore.from_url(
                root,
                config=cast("GCSConfig", _typed(provider_options(lowered, provider))),
                client_options=cast("ClientConfig", _typed(client_options(lowered, provider))),
            )
    except ObstoreError as exc:
        raise ValueError(f"cannot pre-sign URLs under {root!r}: {exc}") from exc
    scheme = root.split("://", 1)[0].lower()
    raise ValueError(f"cannot pre-sign URLs for {scheme}:// storage (use s3, az/abfss or gs)")


def _has(options: Mapping[str, str], table: Mapping[str, str], target: str) -> bool:
    return any(table.get(key) == target for key in options)


def _typed(options: Mapping[str, str]) -> dict[str, Any]:
    """Boolean keys as booleans (obstore refuses the strings)."""
    return {key: flag(key, value) if key in BOOL_KEYS else value for key, value in options.items()}
