"""Pre-signed, expiring URLs for a table's data files, and the endpoint serving local files.

Object storage (`s3://`, `az://`, `gs://`) gets the store's own pre-signed URLs (sharing/
presign.py): recipients download straight from the store. A local folder gets URLs to this
server's `/delta-sharing/files/...`, signed with HMAC over path and expiry; the query keys are
`X-Amz-Expires`/`X-Amz-Signature` because delta-kernel only fetches URLs that look pre-signed.
"""

import hmac
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple
from urllib.parse import quote

from litestar import MediaType, Request, Response, get, head
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from catalog.audit.record import Actor, new_entry, record_entry
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden, MeshError
from catalog.kernel.settings import Settings
from catalog.publishing.storage import tier_table_of
from policies.auth import client_address
from sharing import refusals
from sharing.errors import ProtocolController
from sharing.files.presign import object_store_signer
from sharing.reads import SharedTable
from sharing.recipients.service import check_address
from sharing.signing import mac, signing_key

if TYPE_CHECKING:
    from sharing.access import Access, AccessSnapshot

PREFIX = "/delta-sharing"
_BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
CHUNK_BYTES = 4 << 20  # per read and per send: bounds a download's memory, few thread hops
FILES = PREFIX + "/files"


def file_urls(
    location: str,
    *,
    recipient: str,
    base: str,
    settings: Settings,
    now: datetime,
    not_after: datetime | None = None,
    token_id: str = "",
) -> Callable[[str], str]:
    """Expiring URLs for the data files of the table at `location`, issued to `recipient`:
    a function from a file's path in the table to its URL.

    Local URLs name the recipient (inside the signature), so the file endpoint can apply its
    network allow-list and audit the download against it. What every URL of one answer shares
    (root, expiry, key) is worked out once: a query signs every file of the table. With
    `not_after` (the end of service of a deprecated version), no URL outlives it.
    """
    signer = object_store_signer(settings.storage_root, settings.storage_options)
    if signer is not None:  # a store may fetch or refresh its credentials: `signs_remotely`
        lifetime = expiry(settings, now, not_after) - int(now.timestamp())
        return lambda path: signer.sign(f"{location}/{path}", lifetime)
    root = _relative(location, settings)
    expires = expiry(settings, now, not_after)
    key = signing_key(settings)
    query = (
        f"X-Mesh-Recipient={quote(recipient)}&X-Mesh-Token={quote(token_id)}"
        f"&X-Amz-Expires={expires}"
    )

    def url(path: str) -> str:
        relative = f"{root}/{path}"
        signature = mac(key, _signed_message(relative, expires, recipient, token_id))
        return f"{base}{FILES}/{quote(relative)}?{query}&X-Amz-Signature={signature}"

    return url


def signs_remotely(settings: Settings) -> bool:
    """True when an object store signs the URLs (it may fetch or refresh credentials while
    signing, so URLs are made in a handler thread); local URLs are an HMAC, made on the loop."""
    return object_store_signer(settings.storage_root, settings.storage_options) is not None


def _signed_message(relative: str, expires: int, recipient: str, token_id: str) -> str:
    return f"{relative}\n{expires}\n{recipient}\n{token_id}"


def expiry(settings: Settings, now: datetime, not_after: datetime | None = None) -> int:
    """Epoch seconds at which URLs issued now expire (never after `not_after`, if given)."""
    expires = int(now.timestamp()) + settings.url_lifetime_seconds
    return expires if not_after is None else max(0, min(expires, int(not_after.timestamp())))


def _relative(location: str, settings: Settings) -> str:
    return _relative_to(location, settings.storage_root)


@lru_cache(maxsize=4096)
def _relative_to(location: str, root: str) -> str:
    # Cached: resolving walks the file system, and a query signs every file of the table.
    return str(Path(location).resolve().relative_to(Path(root).resolve()))


class FileController(ProtocolController):
    """Pre-signed file downloads for local storage (GET with Range, HEAD)."""

    path = FILES
    tags = ("delta-sharing",)

    @get("/{path:path}")
    async def download(
        self,
        request: Request[Any, Any, Any],
        path: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Stream:
        """The file, or the requested byte range (206), streamed from disk in bounded chunks,
        once the download's audit entry is durable.

        Ranges stream too: pyarrow coalesces a row group's column chunks into one range of tens
        of MiB, and holding each in memory would cost that much per concurrent reader and delay
        the first byte until the whole range was read. A client reads one file with a dozen
        requests (probes, footer, ranges) one after another, so each is checked on the event
        loop when the recipient's allow-list is cached, like the protocol's reads.
        """
        file = await signed_file(request, path, settings, clock)
        asked = byte_range(request.headers.get("range"), file.size)
        start, length, headers = 0, file.size, {"Accept-Ranges": "bytes"}
        if asked:
            start, end = asked
            length = end - start + 1
            headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        headers["Content-Length"] = str(length)
        table = file.table
        entry = new_entry(
            at=clock.now(),
            actor=Actor(f"recipient:{file.recipient}"),
            action="sharing.file",
            subject=("file", file.relative[-300:]),
            organization=file.recipient,
            token_id=file.token_id,
            product=table.product if table else None,
            tier=table.tier if table else None,
            details={
                "bytes": length,
                "range": (request.headers.get("range") or "")[:100],
                "grant": table.grant_id if table else None,
                "dua": table.dua_id if table else None,
                "purpose": table.purpose if table else None,
            },
        )
        await record_entry(request.app.state.audit, entry)
        handle = file.path.open("rb")  # here, so a vanished file fails before the answer starts
        return Stream(
            _chunks(handle, start, length),
            status_code=206 if asked else 200,
            headers=headers,
            media_type="application/octet-stream",
        )

    @head("/{path:path}")
    async def describe(
        self,
        request: Request[Any, Any, Any],
        path: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[None]:
        """Size of the file, for clients that plan ranged reads."""
        size = (await signed_file(request, path, settings, clock)).size
        # A text media type is the one Litestar renders `None` for; the header says what it is.
        return Response(
            content=None,
            headers={
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
            },
            media_type=MediaType.TEXT,
        )


class FileRefused(Forbidden):
    """The one answer to a bad URL, whatever was wrong with it: it reveals nothing. `reason`
    (what was wrong) goes to the audit trail only."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid or expired file URL")
        self.reason = reason


def _refused(reason: str = "invalid file URL") -> FileRefused:
    return FileRefused(reason)


class SignedFile(NamedTuple):
    """A local file a valid URL names: where it is, its size, and to whom the URL was issued."""

    path: Path
    size: int
    relative: str
    recipient: str
    token_id: str  # the token of the query that issued the URL
    table: SharedTable | None = None  # the recipient's table the file belongs to, once checked


async def signed_file(
    request: Request[Any, Any, Any], path: str, settings: Settings, clock: Clock
) -> SignedFile:
    """The local file a valid, unexpired URL points at; Forbidden for anything else.

    The URL is checked first, without I/O; then the recipient named in it must still exist,
    the caller's address must be inside its allow-list, and the file must be a data file of a
    tier table the recipient may read now (a live grant, at this request's revision, from the
    access snapshot of the token the URL was issued to): a valid signature alone never reaches
    `raw/`, `protected/`, `staging/`, a Delta log or another product's or tier's table, and a
    revoked grant or token stops its URLs at once.
    """
    query = request.query_params
    url = SignedUrl.of(
        path,
        recipient=query.get("X-Mesh-Recipient", ""),
        token_id=query.get("X-Mesh-Token", ""),
        expires=query.get("X-Amz-Expires", ""),
        signature=query.get("X-Amz-Signature", ""),
    )
    url.check_signature(settings)
    request.state[refusals.RECIPIENT] = url.recipient  # signed: the URL was issued to it
    request.state[refusals.TOKEN] = url.token_id or None
    request.state[refusals.TABLE] = tier_table_of(url.relative)
    now = clock.now()
    file = url.local_file(settings, now)
    access: Access = request.app.state.access
    snapshot = await access.snapshot(url.token_id)
    table = recipient_table(snapshot, file, client_address(request), now, settings)
    return file._replace(table=table)


class SignedUrl(NamedTuple):
    """The parts of a file URL, as sent."""

    relative: str
    recipient: str
    token_id: str
    expires: int
    signature: str

    @classmethod
    def of(
        cls, path: str, *, recipient: str, token_id: str, expires: str, signature: str
    ) -> "SignedUrl":
        """The URL's parts; FileRefused when the expiry is not a number."""
        try:
            expiry_at = int(expires)
        except ValueError:
            raise _refused("malformed expiry") from None
        return cls(path.lstrip("/"), recipient, token_id, expiry_at, signature)

    def check_signature(self, settings: Settings) -> None:
        """FileRefused unless this server signed these parts."""
        message = _signed_message(self.relative, self.expires, self.recipient, self.token_id)
        expected = mac(signing_key(settings), message)
        if not hmac.compare_digest(self.signature.encode(), expected.encode()):
            raise _refused("bad signature")

    def local_file(self, settings: Settings, now: datetime) -> SignedFile:
        """The file of an unexpired URL: a data file of a tier table under the storage root."""
        if self.expires < now.timestamp():
            raise _refused("expired")
        root = Path(settings.storage_root).resolve()
        file = (root / self.relative).resolve()
        if root not in file.parents:
            raise _refused("outside the storage root")
        # Only the canonical path of a data file of a tier table: no `..`, `.`, empty or hidden
        # segments, links or Delta log files, whatever was signed.
        if str(file.relative_to(root)) != self.relative or not is_data_file(self.relative):
            raise _refused("not a data file of a tier table")
        if not file.is_file():
            raise _refused("no such file")
        size = file.stat().st_size
        return SignedFile(file, size, self.relative, self.recipient, self.token_id)


def is_data_file(relative: str) -> bool:
    """True for a Parquet data or change file inside a tier table (`products/D/P/TIER/...`)."""
    parts = relative.split("/")
    return (
        tier_table_of(relative) is not None
        and parts[-1].endswith(".parquet")
        and not any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        and "_delta_log" not in parts
    )


def recipient_table(
    snapshot: "AccessSnapshot",
    file: SignedFile,
    address: str | None,
    now: datetime,
    settings: Settings,
) -> SharedTable:
    """The recipient's table holding `file`; Forbidden unless the token the URL was issued to is
    the recipient's and live, the caller is inside its allow-list and a live grant lets it read
    that tier table now. No I/O: everything comes from the token's access snapshot."""
    if snapshot.token is None or snapshot.token[1].name != file.recipient:
        raise _refused("the token the URL was issued to is unknown or not the recipient's")
    token, organization, allowed = snapshot.token
    check_address(allowed, address)
    # The URL lives only as long as the token it was issued to (revoked, expired, rotated
    # out): a revoked token stops its URLs, like its queries.
    if token.revoked_at is not None or token.expires_at <= now:
        raise _refused("the token the URL was issued to is revoked or expired")
    for table in snapshot.tables(organization, now):
        try:
            root = _relative(table.location, settings)
        except ValueError:  # a table outside the local root is never served from here
            continue
        if file.relative.startswith(root + "/"):
            return table
    raise _refused("no live grant of the recipient covers this table")


def _chunks(handle: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """`length` bytes from `start`, a chunk at a time; closes the file however the answer ends."""
    with handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(CHUNK_BYTES, length))
            if not chunk:  # the file shrank under us: end short rather than send padding
                return
            length -= len(chunk)
            yield chunk


class RangeNotSatisfiable(MeshError):
    """A byte range that starts past the end of the file (answered 416, as object stores do)."""

    slug, title, status, code = (
        "range-not-satisfiable",
        "Range not satisfiable",
        416,
        "INVALID_PARAMETER_VALUE",
    )

    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"range {header!r} is outside the file ({size} bytes)")
        self.headers["Content-Range"] = f"bytes */{size}"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """First and last byte of a single `bytes=` range; None means send the whole file.

    As RFC 9110 and S3 do: a header that is not one well-formed byte range (another unit,
    several ranges, last before first) is ignored, and a range with no byte inside the file is
    RangeNotSatisfiable. Positions of any length are read (`_position`): a number past the
    end of every file means "past the end", never an error of its own.
    """
    match = _BYTE_RANGE.fullmatch((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # a suffix: the last N bytes
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header or "", size)
        return max(size - suffix, 0), size - 1
    start = _position(first)
    if last and _position(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header or "", size)
    return start, min(_position(last), size - 1) if last else size - 1


_BEYOND_ANY_FILE = 1 << 64  # stands for every position with more than _POSITION_DIGITS digits
_POSITION_DIGITS = 19


def _position(digits: str) -> int:
    """A byte position from its decimal digits, at most `_BEYOND_ANY_FILE`.

    `int()` refuses more than 4,300 digits (Python's int max-str-digits guard), and a header is
    up to the server's header limit long; no file has a byte past 2**64, so longer numbers
    (leading zeros aside) are all read as that bound. Two such numbers compare equal, which
    only matters for `last < first`, where both are past the end anyway.
    """
    significant = digits.lstrip("0")
    if len(significant) > _POSITION_DIGITS:
        return _BEYOND_ANY_FILE
    return int(significant or "0")
