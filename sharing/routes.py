"""The Delta Sharing protocol under /delta-sharing (parquet response format) and signed files.

Recipients authenticate with their own bearer tokens; every request re-resolves the token, the
recipient and its live grants, so a revoked grant stops new queries at once. Errors use the
protocol's `{"errorCode", "message"}` shape; client mistakes are never 5xx (the official client
retries those for about 100 s).
"""

import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, head, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.types import ExceptionHandlersMap
from sqlmodel import Session

from catalog.clock import Clock
from catalog.errors import Forbidden, InvalidParameter, MeshError, NotFound
from catalog.settings import Settings
from policies.auth import bearer
from sharing import delta, protocol, service
from sharing.service import SharedTable

log = logging.getLogger("mesh.sharing")
PREFIX = "/delta-sharing"
TABLE = "/shares/{share:str}/schemas/{schema:str}/tables/{table:str}"


class UnsupportedOperation(MeshError):
    """A protocol feature this server does not offer."""

    slug, title, status, code = "unsupported", "Unsupported operation", 400, "UNSUPPORTED_OPERATION"


def _error(status: int, code: str, message: str) -> Response[bytes]:
    return Response(
        content=protocol.dumps({"errorCode": code, "message": message}),
        status_code=status,
        media_type=protocol.JSON,
    )


def _mesh_error(_: Request[Any, Any, Any], exc: MeshError) -> Response[bytes]:
    return _error(exc.status, exc.code, exc.detail)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    return _error(400, "INVALID_PARAMETER_VALUE", str(exc.detail or "invalid request"))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code if exc.status_code < 500 else 500
    code = (
        "RESOURCE_DOES_NOT_EXIST"
        if status == 404
        else ("INTERNAL_ERROR" if status == 500 else "MALFORMED_REQUEST")
    )
    return _error(status, code, exc.detail if status < 500 else "internal error")


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error in the sharing protocol", exc_info=exc)
    return _error(500, "INTERNAL_ERROR", "internal error")


HANDLERS: ExceptionHandlersMap = {
    MeshError: _mesh_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal,
}


def signing_key(settings: Settings) -> bytes:
    """The HMAC key (random per process when none is configured)."""
    if settings.signing_key is not None:
        return settings.signing_key.get_secret_value().encode()
    return _PROCESS_KEY


# Without a configured key, URLs and page tokens are valid only within this process.
_PROCESS_KEY = secrets.token_bytes(32)


def _visible(
    request: Request[Any, Any, Any], session: Session, settings: Settings, clock: Clock
) -> tuple[Any, list[SharedTable]]:
    """Token -> recipient -> live grants: re-checked on every request."""
    now = clock.now()
    organization = service.recipient_for(session, bearer(request), now=now)
    return organization, service.shared_tables(session, organization, settings=settings, now=now)


def _page(
    items: list[dict[str, Any]],
    key: bytes,
    scope: str,
    max_results: int | None,
    page_token: str | None,
) -> bytes:
    if max_results is not None and max_results < 0:
        raise InvalidParameter("maxResults must be non-negative")
    start = service.page_offset(key, scope, page_token)
    size = 500 if max_results is None else max_results
    chunk = items[start : start + size]
    body: dict[str, Any] = {"items": chunk}
    if start + size < len(items):
        body["nextPageToken"] = service.page_token(key, scope, start + size)
    return protocol.dumps(body)


def _json(content: bytes) -> Response[bytes]:
    return Response(content=content, media_type=protocol.JSON)


MaxResults = Annotated[int | None, QueryParameter(name="maxResults")]
PageToken = Annotated[str | None, QueryParameter(name="pageToken", max_length=500)]


class SharingController(Controller):
    """Shares, schemas, tables, versions, metadata and queries for one recipient."""

    path = PREFIX
    tags = ("delta-sharing",)
    exception_handlers = HANDLERS

    @get("/shares", sync_to_thread=True)
    def list_shares(
        self,
        request: Request[Any, Any, Any],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """The recipient's one share."""
        org, _ = _visible(request, session, settings, clock)
        items = [{"name": org.name, "id": service.stable_id(org.name)}]
        return _json(
            _page(items, signing_key(settings), f"shares:{org.name}", max_results, page_token)
        )

    @get("/shares/{share:str}", sync_to_thread=True)
    def get_share(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[bytes]:
        """One share."""
        org, tables = _visible(request, session, settings, clock)
        service.check_share(tables, org, share)
        return _json(
            protocol.dumps(
                {
                    "share": {
                        "name": org.name,
                        "id": service.stable_id(org.name),
                    }
                }
            )
        )

    @get("/shares/{share:str}/schemas", sync_to_thread=True)
    def list_schemas(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Product domains with at least one readable table."""
        org, tables = _visible(request, session, settings, clock)
        service.check_share(tables, org, share)
        names = sorted({t.schema for t in tables})
        items = [{"name": n, "share": org.name} for n in names]
        return _json(
            _page(items, signing_key(settings), f"schemas:{org.name}", max_results, page_token)
        )

    @get("/shares/{share:str}/schemas/{schema:str}/tables", sync_to_thread=True)
    def list_tables(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Tables of one schema."""
        org, tables = _visible(request, session, settings, clock)
        service.check_share(tables, org, share)
        mine = [t for t in tables if t.schema == schema.lower()]
        if not mine:
            raise NotFound(f"schema {share}.{schema} not found")
        items = [_table_json(t) for t in mine]
        scope = f"tables:{org.name}:{schema.lower()}"
        return _json(_page(items, signing_key(settings), scope, max_results, page_token))

    @get("/shares/{share:str}/all-tables", sync_to_thread=True)
    def list_all_tables(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Every table of the share."""
        org, tables = _visible(request, session, settings, clock)
        service.check_share(tables, org, share)
        items = [_table_json(t) for t in tables]
        return _json(
            _page(items, signing_key(settings), f"all:{org.name}", max_results, page_token)
        )

    @get(TABLE + "/version", sync_to_thread=True)
    def table_version(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        starting_timestamp: Annotated[str | None, QueryParameter(name="startingTimestamp")] = None,
    ) -> Response[bytes]:
        """The current version, or the first version at or after `startingTimestamp`."""
        _, tables = _visible(request, session, settings, clock)
        found = service.find_table(tables, share, schema, table)
        version = found.current_version
        if starting_timestamp:
            when = _timestamp(starting_timestamp)
            times = delta.commit_times(found.location, settings.storage_options or None)
            later = [v for v in found.versions if times.get(v, 0) >= when]
            if not later:
                raise InvalidParameter(f"no version of the table at or after {starting_timestamp}")
            version = later[0]
        return Response(
            content=b"", headers={"Delta-Table-Version": str(version)}, media_type=protocol.JSON
        )

    @get(TABLE + "/metadata", sync_to_thread=True)
    def table_metadata(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[bytes]:
        """Protocol and metaData lines of the current version."""
        _, tables = _visible(request, session, settings, clock)
        found = service.find_table(tables, share, schema, table)
        _parquet_only(request)
        snap = delta.snapshot(found.location, found.current_version, settings.storage_options)
        return _ndjson([_protocol_line(), _metadata_line(found, snap)], snap.version)

    @post(TABLE + "/query", sync_to_thread=True, status_code=200)
    def query(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
        data: JSONBody[dict[str, Any] | None],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[bytes]:
        """A snapshot (current, `version` or `timestamp`) as pre-signed file URLs."""
        _, tables = _visible(request, session, settings, clock)
        found = service.find_table(tables, share, schema, table)
        _parquet_only(request)
        body = data or {}
        version = _query_version(found, body, settings)
        snap = delta.snapshot(found.location, version, settings.storage_options)
        limit = body.get("limitHint")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidParameter("limitHint must be a non-negative integer")
        lines = [_protocol_line(), _metadata_line(found, snap)]
        now = clock.now()
        base = str(request.base_url).rstrip("/")
        rows = 0
        for f in snap.files:
            if limit is not None and rows >= limit:
                break
            lines.append({"file": _file_json(found, f, base, settings, now)})
            rows += f.num_records or 0
        return _ndjson(lines, snap.version)


def _table_json(table: SharedTable) -> dict[str, Any]:
    return {"name": table.name, "schema": table.schema, "share": table.share, "id": table.table_id}


def _parquet_only(request: Request[Any, Any, Any]) -> None:
    formats = protocol.requested_formats(request.headers.get("delta-sharing-capabilities"))
    if "parquet" not in formats:
        raise UnsupportedOperation("this server answers in the parquet response format only")


def _timestamp(text: str) -> int:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"invalid timestamp {text!r}: expected ISO 8601 such as 2026-01-01T00:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise InvalidParameter(f"timestamp {text!r} needs a time zone, e.g. a trailing Z")
    return int(when.timestamp() * 1000)


def _query_version(table: SharedTable, body: dict[str, Any], settings: Settings) -> int:
    given = [k for k in ("version", "timestamp", "startingVersion") if body.get(k) is not None]
    if len(given) > 1:
        raise InvalidParameter(f"give at most one of version, timestamp, startingVersion ({given})")
    if "startingVersion" in given:
        raise UnsupportedOperation("startingVersion queries are not supported; use /changes")
    if "version" in given:
        version = body["version"]
        if not isinstance(version, int) or version < 0:
            raise InvalidParameter("version must be a non-negative integer")
        if version not in table.versions:
            raise InvalidParameter(f"version {version} is not a published version of this table")
        return int(version)
    if "timestamp" in given:
        when = _timestamp(str(body["timestamp"]))
        times = delta.commit_times(table.location, settings.storage_options or None)
        earlier = [v for v in table.versions if times.get(v, 0) <= when]
        if not earlier:
            raise InvalidParameter(f"the table has no published version at {body['timestamp']}")
        return earlier[-1]
    return table.current_version


def _protocol_line() -> dict[str, Any]:
    return {"protocol": {"minReaderVersion": 1}}


def _metadata_line(table: SharedTable, snap: delta.Snapshot) -> dict[str, Any]:
    return {
        "metaData": {
            "id": table.table_id,
            "format": {"provider": "parquet"},
            "schemaString": snap.schema_string,
            "partitionColumns": snap.partition_columns,
            "configuration": {
                "enableChangeDataFeed": snap.configuration.get(
                    "delta.enableChangeDataFeed", "false"
                )
            },
            "version": snap.version,
            "numFiles": len(snap.files),
            "size": sum(f.size for f in snap.files),
        }
    }


def _file_json(
    table: SharedTable, f: delta.DataFile, base: str, settings: Settings, now: datetime
) -> dict[str, Any]:
    path = f"{_relative(table.location, settings)}/{f.path}"
    expires = int(now.timestamp()) + settings.url_lifetime_seconds
    signature = service.file_signature(signing_key(settings), path, expires)
    url = f"{base}{PREFIX}/files/{quote(path)}?X-Amz-Expires={expires}&X-Amz-Signature={signature}"
    line: dict[str, Any] = {
        "url": url,
        "id": service.stable_id(f"{table.table_id}/{f.path}"),
        "partitionValues": {},
        "size": f.size,
        "expirationTimestamp": expires * 1000,
    }
    if f.stats:
        line["stats"] = f.stats
    return line


def _relative(location: str, settings: Settings) -> str:
    root = Path(settings.storage_root).resolve()
    return str(Path(location).resolve().relative_to(root))


def _ndjson(lines: list[dict[str, Any]], version: int) -> Response[bytes]:
    return Response(
        content=protocol.ndjson(lines),
        media_type=protocol.NDJSON,
        headers={
            "Delta-Table-Version": str(version),
            "delta-sharing-capabilities": "responseformat=parquet",
        },
    )


class FileController(Controller):
    """Pre-signed file downloads for local storage (GET with Range, HEAD)."""

    path = PREFIX + "/files"
    tags = ("delta-sharing",)
    exception_handlers = HANDLERS

    @get("/{path:path}", sync_to_thread=True)
    def download(
        self,
        request: Request[Any, Any, Any],
        path: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[bytes]:
        """The file bytes, or the requested byte range (206)."""
        file, size = _signed_file(request, path, settings, clock)
        start, end = _range(request.headers.get("range"), size)
        with file.open("rb") as handle:
            handle.seek(start)
            content = handle.read(end - start + 1)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(len(content))}
        if request.headers.get("range"):
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return Response(
                content=content,
                status_code=206,
                headers=headers,
                media_type="application/octet-stream",
            )
        return Response(content=content, headers=headers, media_type="application/octet-stream")

    @head("/{path:path}", sync_to_thread=True)
    def describe(
        self,
        request: Request[Any, Any, Any],
        path: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[None]:
        """Size of the file, for clients that plan ranged reads."""
        _, size = _signed_file(request, path, settings, clock)
        return Response(
            content=None,
            headers={"Content-Length": str(size), "Accept-Ranges": "bytes"},
            media_type="application/octet-stream",
        )


def _signed_file(
    request: Request[Any, Any, Any], path: str, settings: Settings, clock: Clock
) -> tuple[Path, int]:
    relative = path.lstrip("/")
    try:
        expires = int(request.query_params.get("X-Amz-Expires", ""))
    except ValueError:
        raise Forbidden("invalid or expired file URL") from None
    signature = request.query_params.get("X-Amz-Signature", "")
    if not service.valid_file_signature(
        signing_key(settings), relative, expires, signature, clock.now()
    ):
        raise Forbidden("invalid or expired file URL")
    root = Path(settings.storage_root).resolve()
    file = (root / relative).resolve()
    if root not in file.parents or not file.is_file():
        raise Forbidden("invalid or expired file URL")
    return file, file.stat().st_size


def _range(header: str | None, size: int) -> tuple[int, int]:
    if not header:
        return 0, max(size - 1, 0)
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise InvalidParameter(f"unsupported Range header {header!r}") from None
    if start > end or start >= size:
        raise InvalidParameter(f"range {header!r} is outside the file")
    return start, end
