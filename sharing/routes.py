"""The Delta Sharing protocol under /delta-sharing, in the parquet and delta response formats.

Every request re-checks, in order: the bearer token (valid, unexpired, unrevoked), the
recipient's network allow-list, and its live grants (readable, DUA in force, minimum-necessary
policy still allowing the tier), so a revocation stops new queries at once (`sharing.access`).
Each handler takes the visit, calls one answer (`sharing.answers`) with plain values and
encodes its typed lines (`sharing.protocol`). Errors use the protocol's
`{"errorCode", "message"}` shape; client mistakes are never 5xx (the official client retries
those for about 100 s).
"""

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, QueryParameter

from catalog.audit.record import record_entry
from catalog.kernel.errors import Unauthenticated
from policies.auth import bearer, client_address, record_auth_failure
from sharing import answers, protocol, refusals
from sharing.access import Access
from sharing.answers import TableAnswer, TableRef, Visit
from sharing.delta import DeltaSnapshots
from sharing.errors import ProtocolController
from sharing.files.urls import PREFIX
from sharing.params import ChangesParams, query_body
from sharing.recipients import service as recipients

TABLE = "/shares/{share:str}/schemas/{schema:str}/tables/{table:str}"
CAPABILITIES = "delta-sharing-capabilities"
MaxResults = Annotated[int | None, QueryParameter(name="maxResults")]
PageToken = Annotated[str | None, QueryParameter(name="pageToken", max_length=500)]


async def visit(request: Request[Any, Any, Any]) -> Visit:
    """Token -> recipient -> network -> live grants, from the token's access snapshot.

    A failed authentication is audited in its own transaction (in a thread) and counted per
    address (and token id from that address); too many get 429 instead of 401, a valid token
    never does. Settings, clock and the access snapshots come from the app state rather than
    dependency injection, whose per-request cost showed on this, the busiest path.
    """
    state = request.app.state
    access: Access = state.access
    credential = bearer(request)
    now = state.clock.now()
    try:
        token_id, secret = recipients.token_id_in(credential)
        snapshot = await access.snapshot(token_id)
        who = snapshot.recipient(secret, now)
    except Unauthenticated as refused:
        await sync_to_thread(
            record_auth_failure, request, credential, refused.detail, recipients.TOKEN_PREFIX
        )
        raise
    request.state[refusals.RECIPIENT] = who.organization.name  # for a refusal's entry
    request.state[refusals.TOKEN] = who.token_id
    recipients.check_address(who.cidrs, client_address(request))
    return Visit(who, snapshot.tables(who.organization, now), state.settings, now)


async def _table_reply(request: Request[Any, Any, Any], answer: TableAnswer) -> Response[bytes]:
    """The lines, once the read's audit entry is durable (else 503).

    Reads change nothing, so the entry is group-committed with other readers' entries instead
    of riding a request transaction, and the commit is awaited on the event loop: a handler
    thread waiting for a commit would be one less for the requests behind.
    """
    await record_entry(request.app.state.audit, answer.entry)
    return protocol.ndjson_response(answer.lines, answer.version, answer.fmt)


def _deltas(request: Request[Any, Any, Any]) -> DeltaSnapshots:
    deltas: DeltaSnapshots = request.app.state.deltas
    return deltas


def _base(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


@dataclass
class QueryOperation(Operation):
    """The query route's OpenAPI operation: it reads its JSON object body itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT))},
            description="version, timestamp, limitHint, jsonPredicateHints ({} when none)",
            required=False,
        )


class SharingController(ProtocolController):
    """Shares, schemas, tables, versions, metadata, queries and changes for one recipient."""

    path = PREFIX
    tags = ("delta-sharing",)

    @get("/shares")
    async def list_shares(
        self,
        request: Request[Any, Any, Any],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """The recipient's one share."""
        page = answers.shares(await visit(request), max_results, page_token)
        return protocol.json_response(page)

    @get("/shares/{share:str}")
    async def get_share(
        self, request: Request[Any, Any, Any], share: FromPath[str]
    ) -> Response[bytes]:
        """One share."""
        return protocol.json_response(answers.share(await visit(request), share))

    @get("/shares/{share:str}/schemas")
    async def list_schemas(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Product domains with at least one readable table."""
        page = answers.schemas(await visit(request), share, max_results, page_token)
        return protocol.json_response(page)

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
        page = answers.tables(await visit(request), share, schema, max_results, page_token)
        return protocol.json_response(page)

    @get("/shares/{share:str}/all-tables")
    async def list_all_tables(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        max_results: MaxResults = None,
        page_token: PageToken = None,
    ) -> Response[bytes]:
        """Every table of the share."""
        page = answers.all_tables(await visit(request), share, max_results, page_token)
        return protocol.json_response(page)

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
        ref = TableRef(share, schema, table)
        found = await answers.version(await visit(request), ref, starting_timestamp)
        headers = {"Delta-Table-Version": str(found)}
        return Response(content=b"", headers=headers, media_type=protocol.JSON)

    @get(TABLE + "/metadata")
    async def table_metadata(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
    ) -> Response[bytes]:
        """Protocol and metaData lines of the current version."""
        answer = await answers.metadata(
            await visit(request), _deltas(request), TableRef(share, schema, table),
            request.headers.get(CAPABILITIES),
        )  # fmt: skip
        return await _table_reply(request, answer)

    @post(TABLE + "/query", status_code=200, operation_class=QueryOperation)
    async def query(
        self,
        request: Request[Any, Any, Any],
        share: FromPath[str],
        schema: FromPath[str],
        table: FromPath[str],
    ) -> Response[bytes]:
        """A snapshot (current, `version` or `timestamp`) as pre-signed file URLs.

        The body is read first but decoded only once the bearer token has been checked:
        nothing a caller without a valid token sends is parsed.
        """
        raw = await request.body()
        who = await visit(request)
        answer = await answers.query(
            who, _deltas(request), TableRef(share, schema, table), query_body(raw),
            request.headers.get(CAPABILITIES), _base(request),
        )  # fmt: skip
        return await _table_reply(request, answer)

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
        """The change data feed between two published versions (inclusive)."""
        params = ChangesParams(
            starting_version, ending_version, starting_timestamp, ending_timestamp,
            protocol.parse_bool(include_historical_metadata),
        )  # fmt: skip
        answer = await answers.changes(
            await visit(request), _deltas(request), TableRef(share, schema, table), params,
            request.headers.get(CAPABILITIES), _base(request),
        )  # fmt: skip
        return await _table_reply(request, answer)
