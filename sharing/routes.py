"""The Delta Sharing protocol under /delta-sharing, in the parquet and delta response formats.

Every request re-checks, in order: the bearer token (valid, unexpired, unrevoked), the
recipient's network allow-list, and its live grants (readable, DUA in force, minimum-necessary
policy still allowing the tier), so a revocation stops new queries at once. Errors use the
protocol's `{"errorCode", "message"}` shape; client mistakes are never 5xx (the official client
retries those for about 100 s).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, QueryParameter
from sqlmodel import Session

from catalog.audit.models import AuditEntry
from catalog.audit.record import Actor, new_entry, record_entry
from catalog.kernel.bodies import MalformedBody, check_body
from catalog.kernel.clock import Clock
from catalog.kernel.errors import InvalidParameter, MeshError, NotFound, Unauthenticated
from catalog.kernel.settings import Settings
from catalog.serving.blocking import WouldBlock, inline_first, may_block
from policies.auth import bearer, client_address, record_auth_failure
from sharing import delta, predicates, protocol, refusals
from sharing import reads as service
from sharing.cache import CacheView, current_view
from sharing.files.urls import PREFIX, expiry, file_urls
from sharing.protocol import HANDLERS, UnsupportedOperation
from sharing.reads import SharedTable
from sharing.recipients import service as recipients

TABLE = "/shares/{share:str}/schemas/{schema:str}/tables/{table:str}"
MaxResults = Annotated[int | None, QueryParameter(name="maxResults")]
PageToken = Annotated[str | None, QueryParameter(name="pageToken", max_length=500)]
T = TypeVar("T")
MAX_PAGE = 500  # items per list page: the reference server's default


class Visit(NamedTuple):
    """One authenticated sharing request: who asks, what it may read, and the server's setup."""

    who: recipients.Recipient
    tables: list[SharedTable]
    settings: Settings
    clock: Clock


def _visible(request: Request[Any, Any, Any], cache: CacheView) -> Visit:
    """Token -> recipient -> network -> live grants: re-checked on every request.

    The rows behind those checks are reused while the governance revision holds
    (`sharing.cache`, at the revision read for this request); the checks themselves run every
    time.

    Failed authentications are audited in their own transaction and counted per address (and
    token id from that address); too many get 429 instead of 401, a valid token never does.
    The session connects only when the cache misses, and then in a handler thread: a
    connection is never held while waiting for another worker. Settings, clock and policy come
    from the app state rather than dependency injection, whose per-request cost showed on
    this, the busiest path.
    """
    state = request.app.state
    settings, clock, policy = state.settings, state.clock, state.policy
    now = clock.now()
    with Session(bind=state.engine) as session:
        credential = bearer(request)
        try:
            recipient = recipients.authenticate(session, credential, now=now, cache=cache)
        except Unauthenticated as refused:
            may_block()  # recording the failure writes the audit trail
            record_auth_failure(request, credential, refused.detail, recipients.TOKEN_PREFIX)
            raise
        request.state[refusals.RECIPIENT] = recipient.organization.name  # for a refusal's entry
        request.state[refusals.TOKEN] = recipient.token_id
        address = client_address(request)
        recipients.check_address(recipient.cidrs, address)
        tables = service.shared_tables(
            session, recipient.organization, settings=settings, policy=policy, now=now, cache=cache
        )
    return Visit(recipient, tables, settings, clock)


async def _answer(request: Request[Any, Any, Any], work: Callable[[Visit], T]) -> T:
    """`work` on what this recipient may read, on the event loop when everything it needs is
    cached (`catalog.serving.blocking`), else in a handler thread.

    The governance revision is read first without a thread (`sharing.cache.RevisionReader`).
    Work that would block, and any refusal (whose audit entry is a write), runs again in a
    thread: the hop cost more than the work itself when all of it was cached.
    """
    view = await current_view(request.app.state)
    return await inline_first(lambda: work(_visible(request, view)), redo=(WouldBlock, MeshError))


def _read_entry(
    recipient: recipients.Recipient,
    action: str,
    table: SharedTable,
    *,
    version: int,
    files: int,
    size: int,
    now: datetime,
) -> AuditEntry:
    """The audit entry of one sharing read (request id, address, user agent from the context)."""
    return new_entry(
        at=now,
        actor=Actor(f"recipient:{recipient.organization.name}"),
        action=action,
        subject_type="table",
        subject=f"{table.share}.{table.schema}.{table.name}",
        organization=recipient.organization.name,
        product=table.product,
        product_version=table.product_versions.get(version),
        tier=table.tier,
        token_id=recipient.token_id,
        details={
            "delta_version": version,
            "grant": table.grant_id,
            "dua": table.dua_id,
            "purpose": table.purpose,
            "files": files,
            "bytes": size,
        },
    )


async def _audited(
    request: Request[Any, Any, Any], read: Callable[[Visit], tuple[Response[bytes], AuditEntry]]
) -> Response[bytes]:
    """Run a read (`_answer`), then answer once its audit entry is durable (else 503).

    Reads change nothing, so the entry is group-committed with other readers' entries instead
    of riding a request transaction, and the commit is awaited on the event loop: a handler
    thread waiting for a commit would be one less for the requests behind.
    """
    response, entry = await _answer(request, read)
    await record_entry(request.app.state.audit, entry)
    return response


def _page(
    items: list[dict[str, Any]],
    settings: Settings,
    scope: str,
    max_results: int | None,
    page_token: str | None,
) -> Response[bytes]:
    """One page of `items`: at most `maxResults` (default and cap `MAX_PAGE`) from the token's
    offset, and a token for the rest.

    `maxResults=0` is refused: a page of nothing cannot advance, so its token would point back
    at the same offset and a client following tokens would loop. Larger values than the cap get
    a page of `MAX_PAGE`, as the protocol allows (fewer items than asked, with a token).
    """
    if max_results is not None and max_results < 1:
        raise InvalidParameter("maxResults must be a positive integer")
    key = service.signing_key(settings)
    start = service.page_offset(key, scope, page_token)
    size = MAX_PAGE if max_results is None else min(max_results, MAX_PAGE)
    body: dict[str, Any] = {"items": items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = service.page_token(key, scope, start + size)
    return Response(content=protocol.dumps(body), media_type=protocol.JSON)


def query_body(raw: bytes) -> dict[str, Any]:
    """The query request's JSON object (`{}` when empty or null); 400 for anything else.

    Bounded in depth like every body (`catalog.kernel.bodies`); called after authentication.
    """
    if not raw.strip():
        return {}
    check_body(raw)
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:  # msgspec's messages name the position, nothing more
        raise MalformedBody(f"the request body is not JSON this server reads: {exc}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParameter("the query request body must be a JSON object")
    return body


@dataclass
class QueryOperation(Operation):
    """The query route's OpenAPI operation: it reads its JSON object body itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT))},
            description="version, timestamp, limitHint, jsonPredicateHints ({} when none)",
            required=False,
        )


class SharingController(Controller):
    """Shares, schemas, tables, versions, metadata, queries and changes for one recipient."""

    path = PREFIX
    tags = ("delta-sharing",)
    exception_handlers = HANDLERS

    @get("/shares")
    async def list_shares(
        self,
        request: Request[Any, Any, Any],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """The recipient's one share."""

        def answer(visit: Visit) -> Response[bytes]:
            name = visit.who.organization.name
            items = [{"name": name, "id": service.stable_id(name)}]
            return _page(items, visit.settings, f"shares:{name}", max_results, page_token)

        return await _answer(request, answer)

    @get("/shares/{share:str}")
    async def get_share(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
    ) -> Response[bytes]:
        """One share."""

        def answer(visit: Visit) -> Response[bytes]:
            service.check_share(visit.who.organization, share)
            name = visit.who.organization.name
            body = {"share": {"name": name, "id": service.stable_id(name)}}
            return Response(content=protocol.dumps(body), media_type=protocol.JSON)

        return await _answer(request, answer)

    @get("/shares/{share:str}/schemas")
    async def list_schemas(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Product domains with at least one readable table."""

        def answer(visit: Visit) -> Response[bytes]:
            service.check_share(visit.who.organization, share)
            name = visit.who.organization.name
            items = [{"name": n, "share": name} for n in sorted({t.schema for t in visit.tables})]
            return _page(items, visit.settings, f"schemas:{name}", max_results, page_token)

        return await _answer(request, answer)

    @get("/shares/{share:str}/schemas/{schema:str}/tables")
    async def list_tables(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Tables of one schema."""

        def answer(visit: Visit) -> Response[bytes]:
            service.check_share(visit.who.organization, share)
            mine = [t for t in visit.tables if t.schema == schema.lower()]
            if not mine:
                raise NotFound(f"schema {share}.{schema} not found")
            scope = f"tables:{visit.who.organization.name}:{schema.lower()}"
            items = [_table_json(t) for t in mine]
            return _page(items, visit.settings, scope, max_results, page_token)

        return await _answer(request, answer)

    @get("/shares/{share:str}/all-tables")
    async def list_all_tables(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Every table of the share."""

        def answer(visit: Visit) -> Response[bytes]:
            service.check_share(visit.who.organization, share)
            scope = f"all:{visit.who.organization.name}"
            items = [_table_json(t) for t in visit.tables]
            return _page(items, visit.settings, scope, max_results, page_token)

        return await _answer(request, answer)

    @get(TABLE + "/version")
    async def table_version(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
        starting_timestamp: Annotated[
            str | None, QueryParameter(name="startingTimestamp", max_length=64)
        ] = None,
    ) -> Response[bytes]:
        """The current version, or the first version at or after `startingTimestamp`."""

        def answer(visit: Visit) -> Response[bytes]:
            found = service.find_table(visit.tables, share, schema, table)
            version = found.current_version
            if starting_timestamp:
                version = _first_at_or_after(found, starting_timestamp, visit.settings)
            return Response(
                content=b"",
                headers={"Delta-Table-Version": str(version)},
                media_type=protocol.JSON,
            )

        return await _answer(request, answer)

    @get(TABLE + "/metadata")
    async def table_metadata(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
    ) -> Response[bytes]:
        """Protocol and metaData lines of the current version."""
        return await _audited(
            request, lambda visit: _metadata(request, visit, share, schema, table)
        )

    @post(TABLE + "/query", status_code=200, operation_class=QueryOperation)
    async def query(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
    ) -> Response[bytes]:
        """A snapshot (current, `version` or `timestamp`) as pre-signed file URLs.

        The body is read here but decoded only once the bearer token has been checked
        (`_query`): nothing a caller without a valid token sends is parsed.
        """
        raw = await request.body()
        decoded: list[dict[str, Any]] = []  # once, though the read may run again in a thread

        def body() -> dict[str, Any]:
            if not decoded:
                decoded.append(query_body(raw))
            return decoded[0]

        return await _audited(
            request, lambda visit: _query(request, visit, share, schema, table, body())
        )

    @get(TABLE + "/changes")
    async def changes(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
        starting_version: Annotated[int | None, QueryParameter(name="startingVersion")] = None,
        ending_version: Annotated[int | None, QueryParameter(name="endingVersion")] = None,
        starting_timestamp: Annotated[
            str | None, QueryParameter(name="startingTimestamp", max_length=64)
        ] = None,
        ending_timestamp: Annotated[
            str | None, QueryParameter(name="endingTimestamp", max_length=64)
        ] = None,
        include_historical_metadata: Annotated[
            str | None, QueryParameter(name="includeHistoricalMetadata", max_length=8)
        ] = None,
    ) -> Response[bytes]:
        """The change data feed between two published versions (inclusive).

        The metaData line is the start version's (clients anchor their replayed log on it);
        with `includeHistoricalMetadata`, later versions whose schema differs follow.
        """
        return await _audited(
            request, lambda visit: _changes(
                request, visit, share, schema, table, starting_version, starting_timestamp,
                ending_version, ending_timestamp, include_historical_metadata,
            ),
        )  # fmt: skip


def _metadata(
    request: Request[Any, Any, Any], visit: Visit, share: str, schema: str, table: str
) -> tuple[Response[bytes], AuditEntry]:
    who, tables, settings, clock = visit
    found = service.find_table(tables, share, schema, table)
    snap = delta.snapshot(found.location, found.current_version, settings.storage_options)
    fmt = response_format(request.headers.get("delta-sharing-capabilities"), snap)
    entry = _read_entry(
        who, "sharing.metadata", found, version=snap.version, files=0, size=0, now=clock.now()
    )
    return _ndjson(_head(fmt, found, snap), snap.version, fmt), entry


def _query(
    request: Request[Any, Any, Any],
    visit: Visit,
    share: str,
    schema: str,
    table: str,
    body: dict[str, Any],
) -> tuple[Response[bytes], AuditEntry]:
    who, tables, settings, clock = visit
    found = service.find_table(tables, share, schema, table)
    version = _query_version(found, body, settings)
    snap = delta.snapshot(found.location, version, settings.storage_options)
    fmt = response_format(request.headers.get("delta-sharing-capabilities"), snap)
    limit = body.get("limitHint")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidParameter("limitHint must be a non-negative integer")
    hint = predicates.parse_hint(body.get("jsonPredicateHints"))
    chosen: list[delta.DataFile] = []
    rows = 0
    for f in snap.files:
        if limit is not None and rows >= limit:
            break
        if predicates.may_match(hint, f):
            chosen.append(f)
            rows += f.num_records or 0
    now = clock.now()
    until = found.not_after([snap.version])
    url = _urls(request, visit, found, now, until)
    expires = expiry(settings, now, until) * 1000
    lines = _head(fmt, found, snap)
    lines += [_file_line(fmt, found, f, url(f.path), expires) for f in chosen]
    entry = _read_entry(
        who, "sharing.query", found, version=snap.version,
        files=len(chosen), size=sum(f.size for f in chosen), now=now,
    )  # fmt: skip
    return _ndjson(lines, snap.version, fmt), entry


def _changes(
    request: Request[Any, Any, Any],
    visit: Visit,
    share: str,
    schema: str,
    table: str,
    starting_version: int | None,
    starting_timestamp: str | None,
    ending_version: int | None,
    ending_timestamp: str | None,
    include_historical_metadata: str | None,
) -> tuple[Response[bytes], AuditEntry]:
    who, tables, settings, clock = visit
    found = service.find_table(tables, share, schema, table)
    versions = _change_versions(
        found, settings, starting_version, starting_timestamp, ending_version, ending_timestamp
    )
    snap = delta.snapshot(found.location, versions[0], settings.storage_options)
    fmt = response_format(request.headers.get("delta-sharing-capabilities"), snap)
    if snap.configuration.get("delta.enableChangeDataFeed", "false").lower() != "true":
        raise InvalidParameter("change data feed is not enabled on this table")
    earlier = [v for v in found.versions if v < versions[0]]
    previous = earlier[-1] if earlier else None
    feed = delta.changes(found.location, versions, settings.storage_options, previous=previous)
    now = clock.now()
    # The deletes of the first version are the previous version's files.
    until = found.not_after(versions + ([] if previous is None else [previous]))
    url = _urls(request, visit, found, now, until)
    expires = expiry(settings, now, until) * 1000
    lines = _head(fmt, found, snap)
    if protocol.parse_bool(include_historical_metadata):
        schema = snap.schema_string
        for version in versions[1:]:
            later = delta.snapshot(found.location, version, settings.storage_options)
            if later.schema_string != schema:
                lines.append(protocol.metadata_line(fmt, found.table_id, later))
                schema = later.schema_string
    lines += [_change_line(fmt, found, c, url(c.path), expires) for c in feed]
    entry = _read_entry(
        who, "sharing.changes", found, version=versions[-1],
        files=len(feed), size=sum(c.size for c in feed), now=now,
    )  # fmt: skip
    return _ndjson(lines, versions[0], fmt), entry


def _head(fmt: str, table: SharedTable, snap: delta.Snapshot) -> list[dict[str, Any]]:
    return [protocol.protocol_line(fmt, snap), protocol.metadata_line(fmt, table.table_id, snap)]


def _table_json(table: SharedTable) -> dict[str, Any]:
    return {"name": table.name, "schema": table.schema, "share": table.share, "id": table.table_id}


def response_format(capabilities: str | None, snap: delta.Snapshot) -> str:
    """The format to answer in for this table, or UnsupportedOperation."""
    needs_delta = snap.min_reader_version > 1
    fmt = protocol.choose_format(capabilities, needs_delta)
    if fmt:
        return fmt
    if needs_delta:
        features = ", ".join(snap.reader_features or ()) or f"reader v{snap.min_reader_version}"
        raise UnsupportedOperation(
            f"this table uses Delta reader features ({features}) that the parquet format cannot "
            "carry; ask for it with delta-sharing-capabilities: responseformat=delta "
            "(use_delta_format=True in the Python client)"
        )
    raise UnsupportedOperation("responseformat must include parquet or delta")


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


def _first_at_or_after(table: SharedTable, text: str, settings: Settings) -> int:
    when = _timestamp(text)
    times = delta.commit_times(table.location, settings.storage_options or None)
    later = [v for v in table.versions if times.get(v, 0) >= when]
    if not later:
        raise InvalidParameter(f"no published version of the table at or after {text}")
    return later[0]


def _last_at_or_before(table: SharedTable, text: str, settings: Settings) -> int:
    when = _timestamp(text)
    times = delta.commit_times(table.location, settings.storage_options or None)
    earlier = [v for v in table.versions if times.get(v, 0) <= when]
    if not earlier:
        raise InvalidParameter(f"the table has no published version at or before {text}")
    return earlier[-1]


def _query_version(table: SharedTable, body: dict[str, Any], settings: Settings) -> int:
    given = [k for k in ("version", "timestamp", "startingVersion") if body.get(k) is not None]
    if len(given) > 1:
        raise InvalidParameter(f"give at most one of version, timestamp, startingVersion ({given})")
    if "startingVersion" in given:
        raise UnsupportedOperation("startingVersion queries are not supported; use /changes")
    if "version" in given:
        version = body["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InvalidParameter("version must be a non-negative integer")
        if version not in table.versions:
            raise InvalidParameter(f"version {version} is not a published version of this table")
        return int(version)
    if "timestamp" in given:
        timestamp = body["timestamp"]
        if not isinstance(timestamp, str) or len(timestamp) > 64:
            raise InvalidParameter("timestamp must be an ISO 8601 string")
        return _last_at_or_before(table, timestamp, settings)
    return table.current_version


def _change_versions(
    table: SharedTable,
    settings: Settings,
    starting_version: int | None,
    starting_timestamp: str | None,
    ending_version: int | None,
    ending_timestamp: str | None,
) -> list[int]:
    """The published versions in the requested range (inclusive), oldest first."""
    if (starting_version is None) == (starting_timestamp is None):
        raise InvalidParameter("give exactly one of startingVersion and startingTimestamp")
    if ending_version is not None and ending_timestamp is not None:
        raise InvalidParameter("give at most one of endingVersion and endingTimestamp")
    if (starting_version is not None and starting_version < 0) or (
        ending_version is not None and ending_version < 0
    ):
        raise InvalidParameter("versions must be non-negative")
    start = (
        starting_version
        if starting_version is not None
        else _first_at_or_after(table, str(starting_timestamp), settings)
    )
    end = table.current_version
    if ending_version is not None:
        end = min(ending_version, end)
    elif ending_timestamp is not None:
        end = _last_at_or_before(table, ending_timestamp, settings)
    if start > table.current_version:
        raise InvalidParameter(
            f"startingVersion {start} is after the latest version {table.current_version}"
        )
    if start > end:
        raise InvalidParameter(f"the start ({start}) is after the end ({end}) of the range")
    versions = [v for v in table.versions if start <= v <= end]
    if not versions:
        raise InvalidParameter(f"no published version between {start} and {end}")
    return versions


def _urls(
    request: Request[Any, Any, Any],
    visit: Visit,
    table: SharedTable,
    now: datetime,
    not_after: datetime | None,
) -> Callable[[str], str]:
    base = str(request.base_url).rstrip("/")
    return file_urls(
        table.location,
        recipient=table.share,
        base=base,
        settings=visit.settings,
        now=now,
        not_after=not_after,
        token_id=visit.who.token_id,
    )


def _file_line(
    fmt: str, table: SharedTable, f: delta.DataFile, url: str, expires: int
) -> dict[str, Any]:
    file_id = service.stable_id(f"{table.table_id}/{f.path}")
    if fmt == "delta":
        add: dict[str, Any] = {
            "path": url,
            "partitionValues": f.partition_values,
            "size": f.size,
            "modificationTime": f.modification_time,
            "dataChange": True,
        }
        if f.stats:
            add["stats"] = f.stats
        return {
            "file": {
                "id": file_id,
                "deltaSingleAction": {"add": add},
                "expirationTimestamp": expires,
            }
        }
    line: dict[str, Any] = {
        "url": url,
        "id": file_id,
        "partitionValues": f.partition_values,
        "size": f.size,
        "expirationTimestamp": expires,
    }
    if f.stats:
        line["stats"] = f.stats
    return {"file": line}


def _change_line(
    fmt: str, table: SharedTable, change: delta.Change, url: str, expires: int
) -> dict[str, Any]:
    file_id = service.stable_id(f"{table.table_id}/{change.path}")
    partitions = change.action.get("partitionValues") or {}
    if fmt == "delta":
        action = {**change.action, "path": url, "partitionValues": partitions}
        action.pop("tags", None)
        return {
            "file": {
                "id": file_id,
                "deltaSingleAction": {change.kind: action},
                "version": change.version,
                "timestamp": change.timestamp,
                "expirationTimestamp": expires,
            }
        }
    line: dict[str, Any] = {
        "url": url,
        "id": file_id,
        "partitionValues": partitions,
        "size": change.size,
        "timestamp": change.timestamp,
        "version": change.version,
        "expirationTimestamp": expires,
    }
    if change.kind == "add" and change.action.get("stats"):
        line["stats"] = change.action["stats"]
    return {"cdf" if change.kind == "cdc" else change.kind: line}


def _ndjson(lines: list[dict[str, Any]], version: int, fmt: str) -> Response[bytes]:
    return Response(
        content=protocol.ndjson(lines),
        media_type=protocol.NDJSON,
        headers={
            "Delta-Table-Version": str(version),
            "delta-sharing-capabilities": protocol.capabilities(fmt),
        },
    )
