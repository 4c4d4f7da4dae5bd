"""Where product data lives: content-addressed raw payloads and one Delta table per tier.

Everything goes through pyarrow filesystems and deltalake storage options, so the same code
writes to a local folder, `s3://`, `az://` or `gs://` (credentials from settings or the
environment, as those libraries read them).
"""

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow as pa
from pyarrow import fs as pafs

from catalog.settings import Settings

CHUNK = 1 << 20


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

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local:
            root = self.root.removeprefix("file://")
            Path(root).mkdir(parents=True, exist_ok=True)
            return pafs.LocalFileSystem(), str(Path(root).resolve())
        filesystem, path = pafs.FileSystem.from_uri(self.root)
        return filesystem, path

    def table_uri(self, domain: str, product: str, tier: str) -> str:
        """The Delta table of one tier of a product."""
        return f"{self.product_uri(domain, product)}/{tier}"

    def product_uri(self, domain: str, product: str) -> str:
        """The folder of a product's tier tables."""
        return f"{self.root}/products/{domain}/{product}"

    def raw_path(self, sha256: str) -> str:
        """Filesystem path of a landed raw payload."""
        _, base = self._fs()
        return f"{base}/raw/{sha256}"

    def land(self, source: Path, *, name: str, resource_type: str | None = None) -> RawFile:
        """Copy `source` into `raw/<sha256>` unless already there; never overwrite."""
        filesystem, base = self._fs()
        filesystem.create_dir(f"{base}/raw", recursive=True)
        temp = f"{base}/raw/.incoming-{uuid.uuid4().hex}"
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
                Path(final).chmod(0o444)
        else:
            filesystem.delete_file(temp)
        return RawFile(name=name, sha256=sha, bytes=size, resource_type=resource_type)

    @contextmanager
    def open_raw(self, sha256: str) -> Iterator[IO[bytes]]:
        """Read a landed payload."""
        filesystem, base = self._fs()
        with filesystem.open_input_stream(f"{base}/raw/{sha256}") as stream:
            yield stream

    @contextmanager
    def open_raw_file(self, sha256: str) -> Iterator[pa.NativeFile]:
        """Random access to a landed payload (Parquet needs to seek)."""
        filesystem, base = self._fs()
        with filesystem.open_input_file(f"{base}/raw/{sha256}") as handle:
            yield handle

    def has_raw(self, sha256: str) -> bool:
        """True when the payload is in raw storage."""
        filesystem, base = self._fs()
        return bool(filesystem.get_file_info(f"{base}/raw/{sha256}").type != pafs.FileType.NotFound)

    def staging_path(self) -> tuple[pafs.FileSystem, str]:
        """A fresh path for a publish's intermediate Parquet file."""
        filesystem, base = self._fs()
        filesystem.create_dir(f"{base}/staging", recursive=True)
        return filesystem, f"{base}/staging/{uuid.uuid4().hex}.parquet"
