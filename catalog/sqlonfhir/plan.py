"""A ViewDefinition compiled once into a plan of fast closures, with the general evaluator behind.

:func:`compile_plan` returns a :class:`FastView` whose :meth:`FastView.rows` gives exactly what
``CompiledView.rows`` gives -- the same rows, cell values and types, and the same
``ResourceEvaluationError`` cases -- because any resource the fast code cannot evaluate exactly
(see :class:`catalog.sqlonfhir.fast.Fallback`) is evaluated by the general evaluator instead, and
every error is raised by it. A view using anything outside the fast subset (`repeat`,
`%rowIndex`, functions the subset lacks, ...) gets no plan: :func:`compile_plan` returns None
and the caller keeps the ``CompiledView``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhirpathpy.parser import parse as fhirpath_parse

from catalog.sqlonfhir.fast import (
    Cell,
    Fallback,
    Path,
    Steps,
    Unsupported,
    cell,
    compile_path,
    compile_steps,
    row_function,
)
from catalog.sqlonfhir.views import CompiledView, _Expr, _ExprFailure, _model_for, joined

__all__ = ["FastView", "compile_plan"]

Row = tuple[Any, ...]
# Constants that are plain strings to fhirpathpy (temporal ones become dates, so: not these).
_STRING_CONSTANTS = (
    *("valueBase64Binary", "valueCanonical", "valueCode", "valueId", "valueMarkdown"),
    *("valueOid", "valueString", "valueUri", "valueUrl", "valueUuid"),
)


@dataclass(frozen=True, slots=True)
class _Column:
    steps: Steps
    cell: Cell

    def value(self, focus: Any, env: dict[str, Any] | None) -> Any:
        return self.cell(focus)


@dataclass(frozen=True, slots=True)
class _GeneralColumn:
    """A column outside the fast subset (`iif(...)`, ...) whose focus is the resource itself:
    evaluated by the general evaluator's own expression object, with the environment
    CompiledView.rows gives it; any failure sends the whole resource to the general path."""

    expr: _Expr
    collection: bool

    def value(self, focus: Any, env: dict[str, Any] | None) -> Any:
        if env is None:
            raise Fallback
        try:
            values = self.expr.values(focus, env)
        except _ExprFailure:
            raise Fallback from None
        if self.collection:
            return values
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        raise Fallback


@dataclass(frozen=True, slots=True)
class _Select:
    iterate: Path | None
    or_null: bool
    columns: tuple[_Column | _GeneralColumn, ...]
    selects: tuple[_Select, ...]
    union: tuple[_Select, ...]
    width: int
    own: Callable[[Any, dict[str, Any] | None], Row]  # the select's own columns of one focus

    def rows(self, item: Any, env: dict[str, Any] | None) -> list[Row]:
        if self.iterate is None:
            foci = [item]
        else:
            foci = []
            for focus in self.iterate([item]):
                if type(focus) is not dict:
                    raise Fallback
                if len(focus) == 1 and "extension" in focus:
                    continue
                foci.append(focus)
            if not foci:
                return [(None,) * self.width] if self.or_null else []
        out: list[Row] = []
        for focus in foci:
            own = self.own(focus, env)
            if not self.selects and not self.union:
                out.append(own)
                continue
            parts: list[list[Row]] = [[own]] if self.columns else []
            for select in self.selects:
                nested = select.rows(focus, env)
                if not nested:
                    break
                parts.append(nested)
            else:
                if self.union:
                    branches: list[Row] = []
                    for branch in self.union:
                        branches.extend(branch.rows(focus, env))
                    parts.append(branches)
                out.extend(joined(parts))
        return out


class FastView:
    """Rows of one resource by the compiled plan, or by the general evaluator when it must."""

    __slots__ = ("_env", "_flat", "_names", "_root", "_where", "general", "resource")

    def __init__(
        self,
        general: CompiledView,
        root: _Select,
        where: tuple[Cell, ...],
        env: dict[str, Any] | None,
    ) -> None:
        self.general = general
        self.resource = general.resource
        self._names = general.column_names
        self._root = root
        self._where = where
        self._env = env  # the base environment, when some column needs the general evaluator
        # A root of columns only: its one row.
        flat = root.iterate is None and not root.selects and not root.union
        self._flat = root.own if flat else None

    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """Exactly ``CompiledView.rows(resource)``."""
        names = self._names
        return [dict(zip(names, row, strict=True)) for row in self.tuples(resource)]

    def tuples(self, resource: dict[str, Any]) -> list[Row]:
        """``rows(resource)`` as tuples of the cells in column order."""
        if type(resource) is not dict:
            return self._general_tuples(resource)
        if resource.get("resourceType") != self.resource:
            return []
        try:
            for condition in self._where:
                verdict = condition(resource)
                if not verdict:
                    return []
                if len(verdict) != 1 or type(verdict[0]) is not bool:
                    raise Fallback
                if not verdict[0]:
                    return []
            env = None
            if self._env is not None:
                env = self._env.copy()
                env["resource"] = env["rootResource"] = env["context"] = resource
                env["rowIndex"] = 0
            if self._flat is not None:
                return [self._flat(resource, env)]
            return self._root.rows(resource, env)
        except Fallback:
            return self._general_tuples(resource)

    def _general_tuples(self, resource: Any) -> list[Row]:
        names = self._names
        return [tuple([row[name] for name in names]) for row in self.general.rows(resource)]


class _Builder:
    def __init__(self, view: Mapping[str, Any], general: CompiledView) -> None:
        self.model = _model_for(view)
        self.constants: dict[str, Any] = {}
        for entry in view.get("constant") or []:
            for key in _STRING_CONSTANTS:
                if type(entry.get(key)) is str:
                    self.constants[str(entry["name"])] = entry[key]
        self.resource = general.resource
        self.general_columns = 0

    def _parsed(self, source: Any) -> dict[str, Any]:
        if not isinstance(source, str) or not source.strip():
            raise Unsupported("empty path")
        parsed = fhirpath_parse(source)  # type: ignore[no-untyped-call]
        children = parsed.get("children") if isinstance(parsed, dict) else None
        if not children:
            raise Unsupported("unparsed")
        node: dict[str, Any] = children[0]
        return node

    def path(self, source: Any, start_type: str) -> tuple[Path, str]:
        return compile_path(self._parsed(source), start_type, self.model, self.constants)

    def steps(self, source: Any, start_type: str, result: str) -> Steps:
        return compile_steps(self._parsed(source), start_type, self.model, self.constants, result)

    def column(
        self, raw: Mapping[str, Any], focus_type: str, at_resource: bool
    ) -> _Column | _GeneralColumn:
        collection = bool(raw.get("collection", False))
        try:
            steps = self.steps(raw["path"], focus_type, "collection" if collection else "single")
        except Unsupported:
            if not at_resource:
                raise
            self.general_columns += 1
            expr = _Expr(raw["path"], "column.path", self.model, True)
            return _GeneralColumn(expr, collection)
        return _Column(steps, cell(steps))

    def select(self, spec: Mapping[str, Any], start_type: str, at_resource: bool) -> _Select:
        if "repeat" in spec:
            raise Unsupported("repeat")
        iterate: Path | None = None
        or_null = False
        focus_type = start_type
        for key in ("forEach", "forEachOrNull"):
            if key in spec:
                iterate, focus_type = self.path(spec[key], start_type)
                or_null = key == "forEachOrNull"
        at_resource = at_resource and iterate is None
        columns = []
        for raw in spec.get("column") or []:
            if str(raw.get("path", "")).strip() in {"%rowIndex", "$this"}:
                raise Unsupported("%rowIndex / $this column")
            columns.append(self.column(raw, focus_type, at_resource))
        selects = tuple(self.select(s, focus_type, at_resource) for s in spec.get("select") or [])
        union = tuple(self.select(s, focus_type, at_resource) for s in spec.get("unionAll") or [])
        width = len(columns) + sum(s.width for s in selects) + (union[0].width if union else 0)
        return _Select(iterate, or_null, tuple(columns), selects, union, width, _own(columns))


def _own(columns: list[_Column | _GeneralColumn]) -> Callable[[Any, dict[str, Any] | None], Row]:
    """The cells of a select's own columns as one function: one generated function for all of
    them when every column is a fast one."""
    fast = [column.steps for column in columns if isinstance(column, _Column)]
    if len(fast) == len(columns):
        with contextlib.suppress(Unsupported):
            return row_function(fast)
    return lambda focus, env: tuple([column.value(focus, env) for column in columns])


def _mentions_row_index(value: Any) -> bool:
    if isinstance(value, str):
        return "%rowIndex" in value
    if isinstance(value, Mapping):
        return any(_mentions_row_index(v) for v in value.values())
    if isinstance(value, Sequence):
        return any(_mentions_row_index(v) for v in value)
    return False


def compile_plan(view: Mapping[str, Any], general: CompiledView) -> FastView | None:
    """The fast plan of a view `general` was compiled from, or None if it has none."""
    if general._uses_clock:  # now()/today(): CompiledView.rows resets the clock per resource
        return None
    if _mentions_row_index(view.get("select")) or _mentions_row_index(view.get("where")):
        return None
    builder = _Builder(view, general)
    try:
        where = tuple(
            cell(builder.steps(w.get("path"), general.resource, "raw"))
            for w in view.get("where") or []
        )
        root = builder.select(
            {"select": list(view.get("select") or [])}, general.resource, at_resource=True
        )
    except (Unsupported, KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    if root.width != len(general.column_names):
        return None
    while not root.columns and not root.union and root.iterate is None and len(root.selects) == 1:
        root = root.selects[0]  # a select around a single select gives that select's rows
    env = dict(general._base_env) if builder.general_columns else None
    return FastView(general, root, where, env)
