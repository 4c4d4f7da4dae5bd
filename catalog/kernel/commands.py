"""Shared pieces of the `mesh` commands: consoles, common options, settings, transactions."""

import getpass
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from typer._click.globals import get_current_context

from catalog.audit.record import Actor, Operator, record_refusal
from catalog.audit.writer import GroupCommit
from catalog.kernel import migrate
from catalog.kernel.db import engine_for, transaction
from catalog.kernel.errors import Forbidden, MeshError
from catalog.kernel.settings import Settings

if TYPE_CHECKING:
    from catalog.wiring import Wiring

out = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Folder of the embedded defaults (env MESH_HOME).", show_default=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded with the change.")]
VersionOpt = Annotated[str, typer.Option("--version", help="Semantic version, e.g. 1.2.0.")]


def load_settings(home: Path | None) -> Settings:
    """Settings from the environment, with `--home` taking precedence."""
    return Settings(home=home) if home is not None else Settings()


def cli_actor() -> Operator:
    """The operating-system user running the command."""
    return Operator(name=f"cli:{getpass.getuser()}")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error to stderr and return the exit to raise."""
    err.print(f"error: {message}", soft_wrap=True)
    return typer.Exit(code)


def validation_message(exc: ValidationError) -> str:
    """A pydantic error in words, one part per field."""
    return "; ".join(
        str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "value_error"
        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors()
    )


Body = TypeVar("Body", bound=BaseModel)


def options_as(model: type[Body], **options: Any) -> Body:
    """A command's options as the API body `model` validates them; a refused value is a usage
    error (exit 2) in the model's own words, never a traceback."""
    try:
        return model(**options)
    except ValidationError as exc:
        raise fail(validation_message(exc), code=2) from None


def migrated_engine(settings: Settings) -> Engine:
    """The engine, refusing to go on when the schema is not at the latest revision."""
    engine = engine_for(settings)
    where = engine.url.render_as_string(hide_password=True)
    try:
        current = migrate.is_current(engine)
    except SQLAlchemyError as exc:
        raise fail(
            f"cannot open the catalog database at {where} ({type(exc).__name__}); "
            "check --home / MESH_DATABASE_URL, or run `mesh db upgrade` first"
        ) from None
    if not current:
        raise fail(
            f"the database at {where} is not migrated to the latest schema; "
            "run `mesh db upgrade` first"
        )
    return engine


def command_subject() -> str:
    """`mesh GROUP COMMAND`: the subject of an audit entry about a refused command."""
    # Typer runs commands with its own copy of click, whose context stack this is.
    context = get_current_context(silent=True)
    words = context.command_path.split()[1:] if context else []
    return " ".join(["mesh", *words])[:300]


def refused(engine: Engine, actor: Actor, exc: MeshError) -> typer.Exit:
    """A command's MeshError as a clean message and exit code 1; a refusal (`Forbidden`) is
    recorded once as `access.denied` first, like the API's (its transaction rolled back)."""
    if isinstance(exc, Forbidden):
        sink = GroupCommit(engine)
        try:
            record_refusal(
                sink,
                at=datetime.now(UTC),
                actor=actor,
                refusal=exc,
                subject=("command", command_subject()),
            )
        finally:
            sink.dispose()
    return fail(exc.detail)


@contextmanager
def wired_unit_of_work(home: Path | None) -> Iterator[tuple[Session, "Wiring"]]:
    """One transaction for a command with the services the API uses (`catalog.wiring`: policy
    engine, authenticator, version listeners); MeshErrors become a clean message and exit 1."""
    from catalog.wiring import build  # the wiring imports the governance layer, which uses this

    settings = load_settings(home)
    engine = migrated_engine(settings)
    wired = build(settings, engine=engine, refresh_seconds=0)
    try:
        with transaction(engine) as session:
            yield session, wired
    except MeshError as exc:
        raise refused(engine, cli_actor(), exc) from None
    finally:
        engine.dispose()


@contextmanager
def unit_of_work(home: Path | None) -> Iterator[Session]:
    """One transaction for a command; MeshErrors become a clean message and exit code 1."""
    with wired_unit_of_work(home) as (session, _):
        yield session


def split_product(ref: str) -> tuple[str, str]:
    """`DOMAIN/NAME` into its two parts."""
    domain, sep, name = ref.partition("/")
    if not sep or not domain or not name or "/" in name:
        raise fail(f"expected a product as DOMAIN/NAME, got {ref!r}", code=2)
    return domain, name


def print_json(value: Any) -> None:
    """Machine-readable output."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


Row = TypeVar("Row", bound=BaseModel)


def print_rows(
    rows: Sequence[Row], as_json: bool, header: Sequence[str], cells: Callable[[Row], Sequence[str]]
) -> None:
    """A listing: with `--json` the rows as JSON, otherwise a table of `header` and `cells(row)`."""
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table(*header)
    for r in rows:
        table.add_row(*cells(r))
    out.print(table)
