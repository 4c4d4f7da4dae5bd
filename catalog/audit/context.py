"""Who is asking, per request: a request id, the client address and user agent.

`RequestContextMiddleware` wraps the whole ASGI app (outside routing and every exception
handler), so every response carries `X-Request-ID`, including 401s, 404s of unknown paths and
the Delta Sharing routes. The context lives in a contextvar: `record` copies it into audit
entries and `RequestIdFilter` into log lines. Sync handlers run in worker threads that inherit
the caller's context (anyio copies it), so they see it too.
"""

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_USER_AGENT = 300
CLI_REQUEST_PREFIX = "cli-"  # request ids of `mesh` commands; never accepted from a remote caller

access_log = logging.getLogger("mesh.access")


@dataclass(frozen=True)
class RequestContext:
    """What the audit trail and the logs record about the request being served."""

    request_id: str
    client_address: str | None = None
    user_agent: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("mesh_request", default=None)


def current_request() -> RequestContext | None:
    """The context of the request being served here, if any."""
    return _current.get()


@contextmanager
def request_scope(context: RequestContext) -> Iterator[RequestContext]:
    """Make `context` current for the duration of a block (a request, a command, a test)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def new_request_id() -> str:
    """A fresh random request id (32 hex characters)."""
    return uuid.uuid4().hex


def accepted_request_id(incoming: str | None) -> str:
    """The caller's `X-Request-ID` when sane (<= 64 of `[A-Za-z0-9._-]`), else a new id.

    An id in the CLI's namespace (`cli-`, any case) is replaced too: the audit trail groups a
    `mesh` command's entries by its `cli-` id, and a remote caller must not be able to add
    entries to that group or pass its requests off as an operator's command.
    """
    if (
        incoming is not None
        and _ACCEPTED_ID.fullmatch(incoming)
        and not incoming.lower().startswith(CLI_REQUEST_PREFIX)
    ):
        return incoming
    return new_request_id()


def new_cli_request_id() -> str:
    """The request id of one `mesh` command run: `cli-` and 32 hex characters."""
    return f"{CLI_REQUEST_PREFIX}{new_request_id()}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestContextMiddleware:
    """Pure ASGI: assign the request id, expose the context, stamp every response, log access.

    The access line has no query string (pre-signed file URLs carry their signature there), and
    its path is redacted (`redact`): an activation link's path is its secret.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        user_agent = _header(scope, b"user-agent")
        context = RequestContext(
            request_id=accepted_request_id(_header(scope, _HEADER_KEY)),
            client_address=str(client[0])[:64] if client else None,
            user_agent=user_agent[:MAX_USER_AGENT] if user_agent else None,
        )
        header = (_HEADER_KEY, context.request_id.encode())
        status: list[int] = []
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, header]}
                status.append(int(message["status"]))
            await send(message)

        with request_scope(context):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "%s %s %s",
                    scope.get("method", "-"),
                    redact(str(scope.get("path", "-"))),
                    status[0] if status else "-",
                    extra={
                        "status": status[0] if status else None,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "client": context.client_address,
                    },
                )


# --- no secret reaches a log line ----------------------------------------------------------------

REDACTED = "[redacted]"
# Path segments that follow one of these are secrets (`/delta-sharing/activation/{secret}`,
# the console's `/console/activate/{secret}`).
SECRET_PATH_SEGMENTS = ("activation", "activate")
_SECRET_TEXT = re.compile(
    # `<prefix><16 hex id>_<secret>`: API (`mesh_`), recipient (`dsr_`) tokens and activation
    # secrets (`dsa_`); the id stays, so lines can still be matched with the audit trail.
    r"(?P<credential>\b[a-z]+_[0-9a-f]{16})_[A-Za-z0-9_-]+"
    rf"|(?P<segment>/(?:{'|'.join(SECRET_PATH_SEGMENTS)})/)[^/?#:;,)\s\"']+"
    # A query string after a path or URL: signed URLs carry their signature there.
    r"|(?P<query>(?<=[\w/.%~-])\?)[^\s\"'#]+"
    r"|(?P<scheme>\b(?i:bearer|basic)\s+)[^\s\"',;]+"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    # `name=value` of a signature, token, secret or password; the console's session cookie
    # (`mesh_console=`, sealed around the API token), its pending OIDC sign-in
    # (`mesh_console_oidc=`, the PKCE verifier) and CSRF token (`_csrf=`) too.
    r"|(?P<param>\b(?i:[\w-]*(?:signature|sig|token|secret|password|credential|api_key"
    r"|csrf|mesh_console|mesh_console_oidc))=)[^&\s\"';]+"
    # The console's CSRF header as a line, a mapping or a pair: `X-CSRF-Token: v`, `'x-csrf-token':
    # 'v'`, `('x-csrf-token', 'v')`.
    r"|(?P<header>\b(?i:x-csrf-token)['\"]?\s*[:,]\s*['\"]?)[^\s\"',;]+"
)


def _redacted(match: re.Match[str]) -> str:
    kept = next(value for value in match.groups() if value is not None)
    if match.lastgroup == "credential":
        return f"{kept}_{REDACTED}"
    if match.lastgroup == "jwt":
        return REDACTED
    return f"{kept}{REDACTED}"


def redact(text: str) -> str:
    """`text` without credentials, activation secrets, query strings or bearer values.

    Most lines have none of the characters every secret pattern needs, and return at once:
    the regular expression costs several microseconds a line, the checks well under one.
    """
    if not any(mark in text for mark in _MARKS):
        lowered = text.lower()
        if "bearer" not in lowered and "basic" not in lowered and "csrf" not in lowered:
            return text
    return _SECRET_TEXT.sub(_redacted, text)


# Every pattern of _SECRET_TEXT but the two schemes and the CSRF header needs one of these.
_MARKS = ("_", "?", "=", "eyJ", *(f"/{segment}/" for segment in SECRET_PATH_SEGMENTS))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return redact(str(value))


def _redact_record(record: logging.LogRecord) -> None:
    """Redact a record's message and traceback in place (see `install_redaction`).

    When the message holds a secret, the arguments are redacted one by one if that suffices
    (formatters such as uvicorn's access formatter read the arguments themselves), else the
    record keeps only the redacted message.
    """
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: logging reports it, without secrets
        record.msg, record.args = redact(str(record.msg)), ()
        message = record.msg
    clean = redact(message)
    if clean != message:
        record.msg, args = redact(str(record.msg)), record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_value(v) for v in args)
        elif isinstance(args, dict):
            record.args = {k: _redact_value(v) for k, v in args.items()}
        try:
            still = redact(record.getMessage()) != record.getMessage()
        except (TypeError, ValueError):
            still = True
        if still:  # a secret across the template and an argument
            record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_redaction() -> None:
    """Every log record of this process, whichever logger makes it (ours, uvicorn's, Litestar's,
    SQLAlchemy's) and whichever handler writes it, is redacted when it is made (`redact`).

    A record factory rather than a handler filter, so no logging configuration (uvicorn's own,
    a test's, an embedding application's) can bypass it. Idempotent.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "mesh_redacts", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _redact_record(record)
        return record

    make.mesh_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)


# --- log lines -----------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.request_id = context.request_id if context else "-"
        return True


# LogRecord attributes that are not extras (uvicorn's `color_message` repeats the message).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, request id, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        # Extras are set after the record factory ran (`install_redaction`): redacted here.
        line |= {k: _redact_value(v) for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = record.exc_text or redact(self.formatException(record.exc_info))
        return _encode_line(line).decode()


_encode_line = msgspec.json.Encoder(enc_hook=str).encode  # json.dumps, default=str, but faster


def lean_log_records() -> None:
    """Stop the logging module collecting what no line of ours shows: caller, thread, process.

    The Python logging HOWTO's "Optimization" switches, for the server, which logs a line per
    request: with msgspec they took an access line from ~28 to ~13 us.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def logging_config(level: str = "info", *, json_lines: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` (and uvicorn `log_config`): every line has the request id,
    and no line a secret (`install_redaction`, done here for every process that logs)."""
    install_redaction()
    formatter: dict[str, Any] = (
        {"()": JsonLineFormatter}
        if json_lines
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar")
            },
            # casbin prints the whole model and policy at INFO on every reload.
            "casbin": {"level": "WARNING"},
        },
    }
