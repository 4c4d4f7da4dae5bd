"""SQL-on-FHIR v2 ViewDefinition evaluator built on the fhirpathpy FHIRPath engine.

A ViewDefinition is validated and every FHIRPath expression in it is parsed exactly once by
:func:`compile_view`; the resulting :class:`CompiledView` then turns one FHIR resource at a time
into flat rows, so the publishing pipeline can stream millions of resources and quarantine the
few that fail (:class:`ResourceEvaluationError`) without stopping the run.

Expressions are evaluated by fhirpathpy's own evaluator.  We drive it directly (rather than via
``fhirpathpy.compile``) for two reasons: the public wrapper rebuilds its function table and
unwraps the typed nodes on every call, which both costs time and hides the FHIR type that
``lowBoundary()``/``highBoundary()`` need.  Plain member chains such as ``name.family.first()``
-- the bulk of real views -- take a shortcut that walks the JSON with the same navigation rules
fhirpathpy uses (the conformance suite and a differential test run both ways).
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final, NoReturn

from antlr4 import CommonTokenStream, InputStream
from fhirpathpy.engine import do_eval
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.invocations.constants import constants as fhirpath_clock
from fhirpathpy.engine.invocations.filtering import of_type_fn
from fhirpathpy.engine.nodes import FP_DateTime, FP_Quantity, FP_Time, ResourceNode, TypeInfo
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser import parse as fhirpath_parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

__all__ = [
    "CompiledView",
    "ResourceEvaluationError",
    "ViewColumn",
    "ViewDefinitionError",
    "compile_view",
]

AstNode = dict[str, Any]
Env = dict[str, Any]
Row = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# Errors


class ViewDefinitionError(ValueError):
    """The ViewDefinition itself is invalid; raised by :func:`compile_view`, never per row."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}")


class ResourceEvaluationError(ValueError):
    """Evaluating one resource failed; the caller quarantines that resource and goes on."""

    def __init__(
        self,
        detail: str,
        *,
        path: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        self.detail = detail
        self.path = path
        self.resource_type = resource_type
        self.resource_id = resource_id
        where = f"{resource_type}/{resource_id}" if resource_id else (resource_type or "resource")
        at = f" at {path}" if path else ""
        super().__init__(f"{where}{at}: {detail}")


class _ExprFailure(Exception):
    """Internal: an expression failed; rows() adds the resource identity before re-raising."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(detail)
        self.path = path
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Public column metadata


@dataclass(frozen=True)
class ViewColumn:
    """One output column, in the order the rows carry them."""

    name: str
    type: str | None
    collection: bool
    description: str | None


# --------------------------------------------------------------------------------------------
# Spec constants

_SQL_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESOURCE_NAME: Final = re.compile(r"[A-Z][A-Za-z]*")
_TYPE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*")

_STRING_CONSTANTS: Final = frozenset(
    {"Base64Binary", "Canonical", "Code", "Id", "Markdown", "Oid", "String", "Uri", "Url", "Uuid"}
)
_INTEGER_CONSTANTS: Final = frozenset({"Integer", "PositiveInt", "UnsignedInt"})
_TEMPORAL_CONSTANTS: Final = frozenset({"Date", "DateTime", "Instant", "Time"})
_CONSTANT_TYPES: Final = (
    _STRING_CONSTANTS
    | _INTEGER_CONSTANTS
    | _TEMPORAL_CONSTANTS
    | {"Boolean", "Decimal", "Integer64"}
)

# Environment variables a path may use besides the view's constants.
_STANDARD_ENV: Final[Mapping[str, str]] = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}
_PER_RESOURCE_ENV: Final = frozenset({"resource", "rootResource", "context", "rowIndex"})
_RESERVED_ENV: Final = _PER_RESOURCE_ENV | frozenset(_STANDARD_ENV)
_CLOCK_FUNCTIONS: Final = frozenset({"now", "today", "timeOfDay"})

_SELECT_KEYS: Final = frozenset(
    {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"}
    | {"id", "extension", "modifierExtension"}
)
_COLUMN_KEYS: Final = frozenset(
    {"name", "path", "description", "collection", "type", "tag"}
    | {"id", "extension", "modifierExtension"}
)

_FHIR_MODELS: Final[Mapping[str, str]] = {
    "4": "r4",
    "5": "r5",
    "6": "r5",
    "3": "stu3",
    "1": "dstu2",
}


# --------------------------------------------------------------------------------------------
# Typed wrappers around fhirpathpy's untyped internals


def _node_data(item: object) -> object:
    """Unwrap fhirpathpy's ResourceNode (it keeps the FHIR type next to the JSON value)."""
    return item.data if isinstance(item, ResourceNode) else item


def _typed_node(data: object, fhir_type: str | None) -> ResourceNode:
    node: ResourceNode = ResourceNode.create_node(data, fhir_type)  # type: ignore[no-untyped-call]
    return node


def _fhirpath_eval(ctx: dict[str, Any], focus: list[Any], node: AstNode) -> list[Any]:
    result: list[Any] = do_eval(ctx, focus, node)  # type: ignore[no-untyped-call]
    return result


def _iterable_item(item: object) -> bool:
    """forEach/repeat skip nulls and bare primitive-extension objects."""
    data = _node_data(item)
    return data is not None and not _is_extension_only(data)


def _is_extension_only(value: object) -> bool:
    """fhirpathpy surfaces `_field` primitive-extension objects as values; they are not data."""
    return type(value) is dict and len(value) == 1 and "extension" in value


class _SyntaxErrorListener:
    """antlr error listener that fails instead of silently recovering (fhirpathpy's default)."""

    def syntaxError(
        self,
        recognizer: object,
        offending_symbol: object,
        line: int,
        column: int,
        msg: str,
        error: object,
    ) -> NoReturn:
        raise SyntaxError(f"column {column + 1}: {msg}")

    def reportAmbiguity(self, *args: object) -> None:
        """Ambiguities are resolved by the grammar; nothing to report."""

    def reportAttemptingFullContext(self, *args: object) -> None:
        """Diagnostic only."""

    def reportContextSensitivity(self, *args: object) -> None:
        """Diagnostic only."""


def _check_syntax(expression: str) -> None:
    """Parse the whole text strictly: fhirpathpy's parse() ignores trailing garbage."""
    listener = _SyntaxErrorListener()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.entireExpression()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------------------------
# Functions the spec needs that fhirpathpy lacks or gets wrong


_REFERENCE: Final = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def _resource_key(data: object) -> str | None:
    """Row key of a resource: its logical id (joins with getReferenceKey on relative refs)."""
    if isinstance(data, Mapping) and "resourceType" in data:
        rid = data.get("id")
        if isinstance(rid, str) and rid:
            return rid
    return None


def _reference_key(data: object, wanted_type: str | None) -> str | None:
    """Key a Reference points at, or None if it is unresolvable or of another type."""
    if type(data) is not dict and not isinstance(data, Mapping):
        return None
    ref = data.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return None
    if ref.startswith("urn:uuid:"):
        declared = data.get("type")
        if wanted_type is not None and declared != wanted_type:
            return None
        return ref[len("urn:uuid:") :] or None
    match = _REFERENCE.search(ref)
    if match is None:
        return None
    ref_type, ref_id = match.group(1), match.group(2)
    if wanted_type is not None and ref_type != wanted_type:
        return None
    return ref_id


def _type_argument(type_info: object) -> str | None:
    """getReferenceKey(Patient) and getReferenceKey('Patient') both name a type."""
    if isinstance(type_info, TypeInfo) and isinstance(type_info.name, str):
        return type_info.name.strip("'\"`")
    return None


def _fn_get_resource_key(ctx: dict[str, Any], coll: list[Any]) -> list[str]:
    keys = (_resource_key(_node_data(item)) for item in coll)
    return [key for key in keys if key is not None]


def _fn_get_reference_key(
    ctx: dict[str, Any], coll: list[Any], type_info: object = None
) -> list[str]:
    wanted = _type_argument(type_info)
    keys = (_reference_key(_node_data(item), wanted) for item in coll)
    return [key for key in keys if key is not None]


def _fn_join(ctx: dict[str, Any], coll: list[Any], separator: object = "") -> str:
    """fhirpathpy returns {} for an empty input; the spec (and the suite) want ''."""
    sep = separator if isinstance(separator, str) else ""
    parts: list[str] = []
    for item in coll:
        value = _node_data(item)
        if _is_extension_only(value) or value is None:
            continue
        if not isinstance(value, str):
            raise TypeError("join() requires a collection of strings")
        parts.append(value)
    return sep.join(parts)


def _fn_extension(ctx: dict[str, Any], coll: list[Any], url: object) -> list[ResourceNode]:
    """fhirpathpy returns only the first match and fails on url-less extensions."""
    found: list[ResourceNode] = []
    for item in coll:
        element = _node_data(item)
        if not isinstance(element, Mapping):
            continue
        extensions = element.get("extension")
        if not isinstance(extensions, list):
            continue
        found.extend(
            _typed_node(ext, "Extension")
            for ext in extensions
            if isinstance(ext, Mapping) and ext.get("url") == url
        )
    return found


def _fn_of_type(ctx: dict[str, Any], coll: list[Any], type_info: object) -> list[Any]:
    """Bind the model first, as fhirpathpy's is/as do, so subtype checks never depend on
    whether some earlier expression happened to call is()/as()."""
    TypeInfo.model = ctx.get("model")
    result: list[Any] = of_type_fn(ctx, coll, type_info)  # type: ignore[no-untyped-call]
    return result


# lowBoundary()/highBoundary() (FHIRPath 3.0 draft, experimental in SQL on FHIR).

_DATE_TIME: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
_TIME: Final = re.compile(r"T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?")
_DATE_TYPES: Final[frozenset[str | None]] = frozenset({"date", "System.Date"})
_DATE_TIME_TYPES: Final[frozenset[str | None]] = frozenset(
    {"dateTime", "instant", "System.DateTime"}
)
_TIME_TYPES: Final[frozenset[str | None]] = frozenset({"time", "System.Time"})
_MAX_DECIMAL_PRECISION: Final = 31


def _decimal_boundary(value: Decimal, precision: int | None, high: bool) -> Decimal | None:
    exponent = value.as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    half = Decimal(5).scaleb(-(scale + 1))
    bound = value + half if high else value - half
    if precision is None:
        return bound
    if not 0 <= precision <= _MAX_DECIMAL_PRECISION:
        return None
    return bound.quantize(Decimal(1).scaleb(-precision), ROUND_CEILING if high else ROUND_FLOOR)


def _fraction(digits: str | None, high: bool) -> str:
    if digits:
        return (digits + ("9" if high else "0") * 3)[:3]
    return "999" if high else "000"


def _date_parts(match: re.Match[str], high: bool) -> tuple[str, str, str]:
    year, month, day = match.group(1), match.group(2), match.group(3)
    if month is None:
        month = "12" if high else "01"
    if day is None:
        day = str(calendar.monthrange(int(year), int(month))[1]) if high else "01"
    return year, month, day


def _date_boundary(text: str, precision: int | None, high: bool) -> str | None:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day = _date_parts(match, high)
    if precision is None or precision >= 8:
        return f"{year}-{month}-{day}"
    if precision >= 6:
        return f"{year}-{month}"
    return year if precision >= 4 else None


def _date_time_boundary(text: str, precision: int | None, high: bool) -> str | None:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day = _date_parts(match, high)
    hour = match.group(4) or ("23" if high else "00")
    minute = match.group(5) or ("59" if high else "00")
    second = match.group(6) or ("59" if high else "00")
    fraction = _fraction(match.group(7), high) if match.group(6) else _fraction(None, high)
    zone = match.group(8) or ("-12:00" if high else "+14:00")
    full = f"{year}-{month}-{day}T{hour}:{minute}:{second}.{fraction}{zone}"
    if precision is None or precision >= 17:
        return full
    cuts = {14: 19, 12: 16, 10: 13}
    for digits, length in cuts.items():
        if precision >= digits:
            return full[:length] + zone
    return _date_boundary(text[:10], precision, high)


def _time_boundary(text: str, precision: int | None, high: bool) -> str | None:
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    hour = match.group(1)
    minute = match.group(2) or ("59" if high else "00")
    second = match.group(3) or ("59" if high else "00")
    fraction = _fraction(match.group(4), high) if match.group(3) else _fraction(None, high)
    full = f"{hour}:{minute}:{second}.{fraction}"
    if precision is None or precision >= 9:
        return full
    for digits, length in ((6, 8), (4, 5), (2, 2)):
        if precision >= digits:
            return full[:length]
    return None


def _temporal_kind(item: object) -> tuple[str | None, object]:
    """Classify a boundary input by its FHIR type, falling back to the shape of the value."""
    data = _node_data(item)
    fhir_type = item.path if isinstance(item, ResourceNode) else None
    if isinstance(data, FP_Time):
        return "time", data.asStr
    if isinstance(data, FP_DateTime):
        text = data.asStr or ""
        return ("dateTime" if "T" in text else "date"), text
    if fhir_type in _DATE_TYPES:
        return "date", data
    if fhir_type in _DATE_TIME_TYPES:
        return "dateTime", data
    if fhir_type in _TIME_TYPES:
        return "time", data
    return fhir_type, data


def _boundary(item: object, precision: int | None, high: bool) -> object:
    kind, data = _temporal_kind(item)
    if isinstance(data, bool):
        return None
    if isinstance(data, int | float | Decimal):
        return _decimal_boundary(Decimal(str(data)), precision, high)
    if isinstance(data, str):
        if kind == "date":
            bound = _date_boundary(data, precision, high)
            return None if bound is None else _typed_node(bound, "date")
        if kind == "dateTime":
            bound = _date_time_boundary(data, precision, high)
            return None if bound is None else _typed_node(bound, "dateTime")
        if kind == "time":
            bound = _time_boundary(data, precision, high)
            return None if bound is None else _typed_node(bound, "time")
        return None
    if isinstance(data, Mapping):
        if kind == "Period":
            edge = data.get("end" if high else "start")
            if not isinstance(edge, str):
                return None
            bound = _date_time_boundary(edge, precision, high)
            return None if bound is None else _typed_node(bound, "dateTime")
        value = data.get("value")
        if kind in {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity"} and (
            isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        ):
            number = _decimal_boundary(Decimal(str(value)), precision, high)
            return None if number is None else _typed_node({**data, "value": number}, kind)
    return None


def _make_boundary(high: bool) -> Callable[..., list[Any]]:
    def boundary(ctx: dict[str, Any], coll: list[Any], precision: object = None) -> list[Any]:
        items = [item for item in coll if not _is_extension_only(_node_data(item))]
        if not items:
            return []
        if len(items) > 1:
            raise ValueError("lowBoundary()/highBoundary() need a single input value")
        exact = isinstance(precision, int) and not isinstance(precision, bool)
        digits = precision if exact and isinstance(precision, int) else None
        bound = _boundary(items[0], digits, high)
        return [] if bound is None else [bound]

    return boundary


_FUNCTIONS: Final[dict[str, dict[str, Any]]] = {
    "getResourceKey": {"fn": _fn_get_resource_key},
    "getReferenceKey": {"fn": _fn_get_reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
    "join": {"fn": _fn_join, "arity": {0: [], 1: ["String"]}},
    "extension": {"fn": _fn_extension, "arity": {1: ["String"]}},
    "ofType": {"fn": _fn_of_type, "arity": {1: ["TypeSpecifier"]}},
    "lowBoundary": {"fn": _make_boundary(high=False), "arity": {0: [], 1: ["Integer"]}},
    "highBoundary": {"fn": _make_boundary(high=True), "arity": {0: [], 1: ["Integer"]}},
}
_KNOWN_FUNCTIONS: Final = frozenset(invocation_registry) | frozenset(_FUNCTIONS)


# --------------------------------------------------------------------------------------------
# Compiled FHIRPath expressions


def _plain(value: object) -> object:
    """Turn one fhirpathpy result item into a JSON-ish cell value (None = not data)."""
    value = _node_data(value)
    kind = type(value)
    if kind is str or kind is bool or kind is int or kind is Decimal:
        return value
    if kind is float:
        return Decimal(str(value))
    if value is None or _is_extension_only(value):
        return None
    if isinstance(value, FP_DateTime | FP_Time):
        return value.asStr
    if isinstance(value, FP_Quantity):
        return str(value)
    return value


def _plain_values(items: Iterable[Any]) -> list[Any]:
    values = []
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool:
            values.append(item)
            continue
        value = _plain(item)
        if value is not None:
            values.append(value)
    return values


class _NotFast(Exception):
    """Internal: the member-chain shortcut met data it does not model; use fhirpathpy."""


_MEMBER: Final = 0
_FIRST: Final = 1
_RESOURCE_KEY: Final = 2
_REFERENCE_KEY: Final = 3

_Op = tuple[int, str, str]
_NON_NAVIGABLE_TYPES: Final = frozenset({"Resource", "DomainResource"})
_OPAQUE_SCALARS: Final = (str, int, float, Decimal, bool)


def _identifier_text(node: AstNode) -> str | None:
    """The name in an Identifier node, as fhirpathpy's identifier() evaluator reads it."""
    if node.get("type") != "Identifier":
        return None
    text = node.get("text")
    if not isinstance(text, str) or '"' in text:
        return None
    return text.replace("`", "")


def _only_child(node: AstNode, node_type: str) -> AstNode | None:
    children = node.get("children") or []
    if len(children) != 1 or not isinstance(children[0], dict):
        return None
    child: AstNode = children[0]
    return child if child.get("type") == node_type else None


def _function_call(node: AstNode) -> tuple[str, list[AstNode]] | None:
    functn = _only_child(node, "Functn")
    if functn is None:
        return None
    children = functn.get("children") or []
    if not children:
        return None
    name = _identifier_text(children[0])
    if name is None:
        return None
    params: list[AstNode] = []
    if len(children) > 1:
        params = list(children[1].get("children") or [])
    return name, params


def _fast_step(node: AstNode, at_root: bool) -> list[_Op] | None:
    """Ops for an invocation in a chain, or None when fhirpathpy must evaluate it."""
    if node.get("type") == "MemberInvocation":
        identifier = (node.get("children") or [{}])[0]
        key = _identifier_text(identifier)
        if key is None or not key or key[0].isupper() or key == "length":
            return None
        return [(_MEMBER, key, "_" + key)]
    if node.get("type") == "ThisInvocation":
        return [] if at_root else None
    if node.get("type") != "FunctionInvocation":
        return None
    call = _function_call(node)
    if call is None:
        return None
    name, params = call
    if name == "first" and not params and not at_root:
        return [(_FIRST, "", "")]
    if name == "getResourceKey" and not params and at_root:
        return [(_RESOURCE_KEY, "", "")]
    if name == "getReferenceKey" and not at_root and len(params) <= 1:
        wanted = ""
        if params:
            text = params[0].get("text")
            if not isinstance(text, str):
                return None
            wanted = text.strip("'\"`")
            if not _TYPE_NAME.fullmatch(wanted):
                return None
        return [(_REFERENCE_KEY, wanted, "")]
    return None


def _fast_ops(node: AstNode) -> list[_Op] | None:
    """Recognise `a.b.c`, `$this`, `x.first()`, `getResourceKey()`, `ref.getReferenceKey(T)`."""
    node_type = node.get("type")
    if node_type == "TermExpression":
        term = _only_child(node, "InvocationTerm")
        if term is None:
            return None
        children = term.get("children") or []
        return _fast_step(children[0], at_root=True) if len(children) == 1 else None
    if node_type == "InvocationExpression":
        children = node.get("children") or []
        if len(children) != 2:
            return None
        head = _fast_ops(children[0])
        if head is None or (head and head[-1][0] in {_RESOURCE_KEY, _REFERENCE_KEY}):
            return None
        tail = _fast_step(children[1], at_root=False)
        return None if tail is None else head + tail
    return None


@dataclass(frozen=True, slots=True)
class _Plan:
    """Member-chain ops resolved against the model for one starting FHIR type."""

    ops: tuple[_Op, ...]
    result_type: str | None
    needs_mapping: bool
    yields_keys: bool

    def run(self, data: object) -> list[Any]:
        """Navigate the JSON like fhirpathpy's member_invocation (values, then `_x` shadows)."""
        if self.needs_mapping and type(data) is not dict:
            raise _NotFast
        current: list[Any] = [data]
        for code, arg, shadow in self.ops:
            if code == _MEMBER:
                found: list[Any] = []
                for element in current:
                    if type(element) is dict:
                        value = element.get(arg)
                        if value is not None:
                            if type(value) is list:
                                found.extend(value)
                            else:
                                found.append(value)
                        value = element.get(shadow)
                        if value is not None:
                            if type(value) is list:
                                found.extend(value)
                            else:
                                found.append(value)
                    elif element is not None and not isinstance(element, _OPAQUE_SCALARS):
                        raise _NotFast
                current = found
            elif code == _FIRST:
                del current[1:]
            elif code == _RESOURCE_KEY:
                key = _resource_key(current[0]) if current else None
                current = [] if key is None else [key]
            else:
                wanted = arg or None
                keys = (_reference_key(element, wanted) for element in current)
                current = [key for key in keys if key is not None]
        return current


class _Expr:
    """One FHIRPath expression, parsed once and evaluated against many foci."""

    __slots__ = ("_model", "_node", "_ops", "_plans", "path", "source", "uses_clock")

    def __init__(self, source: str, path: str, model: Mapping[str, Any], fast: bool) -> None:
        self.source = source
        self.path = path
        self._model = model
        self._node, self._ops = self._compile(source, path, fast)
        self._plans: dict[str | None, _Plan | None] = {}
        self.uses_clock = False

    @staticmethod
    def _compile(source: str, path: str, fast: bool) -> tuple[AstNode, list[_Op] | None]:
        if not source.strip():
            raise ViewDefinitionError(path, "FHIRPath expression is empty")
        try:
            _check_syntax(source)
            parsed = fhirpath_parse(source)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ViewDefinitionError(path, f"invalid FHIRPath {source!r}: {exc}") from exc
        children = parsed.get("children") if isinstance(parsed, dict) else None
        if not children:
            raise ViewDefinitionError(path, f"invalid FHIRPath {source!r}")
        root: AstNode = children[0]
        return root, (_fast_ops(root) if fast else None)

    def check_names(self, env_names: frozenset[str]) -> None:
        """Fail at compile time on names fhirpathpy would only reject (or ignore) per row."""
        stack: list[Any] = [self._node]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            node_type = node.get("type")
            if node_type == "ExternalConstant":
                first = (node.get("children") or [{}])[0]
                name = _identifier_text(first) if isinstance(first, dict) else None
                if name is None:
                    text = str(first.get("text", "")) if isinstance(first, dict) else ""
                    name = text.strip("'\"`")
                if name not in env_names:
                    raise ViewDefinitionError(
                        self.path, f"undefined constant %{name} in {self.source!r}"
                    )
            elif node_type == "Functn":
                ident = (node.get("children") or [{}])[0]
                name = _identifier_text(ident) if isinstance(ident, dict) else None
                if name is not None and name not in _KNOWN_FUNCTIONS:
                    raise ViewDefinitionError(
                        self.path, f"unsupported FHIRPath function {name}() in {self.source!r}"
                    )
                if name in _CLOCK_FUNCTIONS:
                    self.uses_clock = True
            stack.extend(node.get("children") or [])

    # -- evaluation ---------------------------------------------------------------------------

    def _plan_for(self, start_type: str | None) -> _Plan | None:
        """Resolve member steps the way fhirpathpy's member_invocation types them."""
        if start_type in self._plans:
            return self._plans[start_type]
        plan: _Plan | None = None
        ops = self._ops or []
        current = start_type
        needs_mapping = any(op[0] == _MEMBER for op in ops)
        feasible = current is not None or not needs_mapping
        if feasible:
            defined_elsewhere = self._model["pathsDefinedElsewhere"]
            choices = self._model["choiceTypePaths"]
            path_to_type = self._model["path2Type"]
            for op in ops:
                if op[0] != _MEMBER:
                    continue
                child = f"{current}.{op[1]}"
                child = defined_elsewhere.get(child, child)
                if child in choices:
                    feasible = False
                    break
                if op[1] == "extension":
                    child = "Extension"
                current = path_to_type.get(child, child)
                if current in _NON_NAVIGABLE_TYPES:
                    feasible = False
                    break
        if feasible:
            yields_keys = bool(ops) and ops[-1][0] in {_RESOURCE_KEY, _REFERENCE_KEY}
            plan = _Plan(tuple(ops), current, needs_mapping, yields_keys)
        self._plans[start_type] = plan
        return plan

    def _fast(self, focus: object) -> tuple[_Plan, list[Any]] | None:
        """Run the member-chain shortcut if it applies to this focus, else None."""
        data: object = focus
        start: str | None = None
        if isinstance(focus, dict):
            resource_type = focus.get("resourceType")
            start = resource_type if isinstance(resource_type, str) else None
        elif isinstance(focus, ResourceNode):
            start = focus.path
            data = focus.data
        plans = self._plans
        plan = plans[start] if start in plans else self._plan_for(start)
        if plan is None:
            return None
        try:
            return plan, plan.run(data)
        except _NotFast:
            return None

    def _slow(self, focus: object, env: Env) -> list[Any]:
        root = [focus]
        ctx = {
            "dataRoot": root,
            "$this": root,
            "vars": env,
            "model": self._model,
            "userInvocationTable": _FUNCTIONS,
        }
        try:
            return _fhirpath_eval(ctx, root, self._node)
        except Exception as exc:
            raise _ExprFailure(self.path, f"{self.source!r} failed: {exc}") from exc

    def values(self, focus: object, env: Env) -> list[Any]:
        """Plain cell values of the expression at `focus`."""
        if self._ops is not None:
            hit = self._fast(focus)
            if hit is not None:
                return _plain_values(hit[1])
        return _plain_values(self._slow(focus, env))

    def nodes(self, focus: object, env: Env) -> list[Any]:
        """Typed items to iterate over (forEach / repeat), without primitive-extension noise."""
        if self._ops is not None:
            hit = self._fast(focus)
            if hit is not None:
                plan, raw = hit
                if plan.yields_keys:
                    return raw
                if not plan.needs_mapping:  # `$this` / `$this.first()`: keep the typed focus
                    raw = [focus]
                    return [item for item in raw if _iterable_item(item)]
                result_type = plan.result_type
                return [_typed_node(item, result_type) for item in raw if _iterable_item(item)]
        return [item for item in self._slow(focus, env) if _iterable_item(item)]

    def condition(self, focus: object, env: Env) -> bool:
        """A `where` path: empty is false, a single boolean is itself, anything else is an error."""
        values = self.values(focus, env)
        if not values:
            return False
        if len(values) == 1 and isinstance(values[0], bool):
            return values[0]
        raise _ExprFailure(
            self.path,
            f"where path {self.source!r} must evaluate to a boolean, got {values[:3]!r}",
        )


# --------------------------------------------------------------------------------------------
# Compiled select tree


@dataclass(frozen=True)
class _Column:
    name: str
    expr: _Expr
    collection: bool

    def value(self, focus: object, env: Env) -> object:
        values = self.expr.values(focus, env)
        if self.collection:
            return values
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        raise _ExprFailure(
            self.expr.path,
            f"column {self.name!r} yielded {len(values)} values but is not collection: true",
        )


_PLAIN: Final = "select"
_FOR_EACH: Final = "forEach"
_FOR_EACH_OR_NULL: Final = "forEachOrNull"
_REPEAT: Final = "repeat"


@dataclass(frozen=True)
class _Select:
    """One select; its columns (own, nested selects, unionAll) are contiguous in the output."""

    kind: str
    iterate: tuple[_Expr, ...]
    columns: tuple[_Column, ...]
    selects: tuple[_Select, ...]
    union: tuple[_Select, ...]
    null_row: Row

    def _foci(self, item: object, env: Env) -> list[Any]:
        if self.kind == _REPEAT:
            return self._descendants(item, env)
        return self.iterate[0].nodes(item, env)

    def _descendants(self, item: object, env: Env) -> list[Any]:
        """Depth-first, pre-order union of all repeat paths at every depth."""
        found: list[Any] = []
        pending: list[Iterator[Any]] = [iter(self._children(item, env))]
        while pending:
            child = next(pending[-1], _EXHAUSTED)
            if child is _EXHAUSTED:
                pending.pop()
                continue
            found.append(child)
            pending.append(iter(self._children(child, env)))
        return found

    def _children(self, item: object, env: Env) -> list[Any]:
        children: list[Any] = []
        for expr in self.iterate:
            children.extend(
                child for child in expr.nodes(item, env) if isinstance(_node_data(child), Mapping)
            )
        return children

    def rows(self, item: object, env: Env, row_index: int) -> list[Row]:
        env["rowIndex"] = row_index
        iterating = self.kind != _PLAIN
        foci = self._foci(item, env) if iterating else [item]
        if not foci:
            return [self.null_row] if self.kind == _FOR_EACH_OR_NULL else []
        out: list[Row] = []
        columns = self.columns
        for position, focus in enumerate(foci):
            index = position if iterating else row_index
            env["rowIndex"] = index
            own = tuple([column.value(focus, env) for column in columns])
            if not self.selects and not self.union:
                out.append(own)
                continue
            parts: list[list[Row]] = [[own]] if columns else []
            for select in self.selects:
                nested = select.rows(focus, env, index)
                if not nested:
                    break
                parts.append(nested)
            else:
                if self.union:
                    branches: list[Row] = []
                    for branch in self.union:
                        branches.extend(branch.rows(focus, env, index))
                    parts.append(branches)
                out.extend(joined(parts))
        return out


def joined(parts: list[list[Row]]) -> Iterable[Row]:
    """The rows of a select from the rows of its parts (own columns, nested selects, unionAll
    branches): every combination, each row the parts' cells in order."""
    if len(parts) == 1:
        return parts[0]
    return (tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts))


_EXHAUSTED: Final = object()


# --------------------------------------------------------------------------------------------
# The compiled view


class CompiledView:
    """A validated ViewDefinition, ready to turn resources into rows."""

    __slots__ = (
        "_base_env",
        "_names",
        "_root",
        "_uses_clock",
        "_where",
        "columns",
        "name",
        "resource",
    )

    def __init__(
        self,
        *,
        resource: str,
        name: str | None,
        columns: tuple[ViewColumn, ...],
        root: _Select,
        where: tuple[_Expr, ...],
        base_env: Mapping[str, Any],
        uses_clock: bool,
    ) -> None:
        self.resource = resource
        self.name = name
        self.columns = columns
        self._names = tuple(column.name for column in columns)
        self._root = root
        self._where = where
        self._base_env = dict(base_env)
        self._uses_clock = uses_clock

    @property
    def column_names(self) -> tuple[str, ...]:
        """Output column names in order (what a table schema or expectColumns compares)."""
        return self._names

    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """All rows for one resource; [] if it is another type or a `where` rejects it.

        Cells hold plain values (str, int, Decimal, bool, None, dict for complex types, list
        for `collection: true`); complex values are shared with `resource`, not copied.
        """
        if not isinstance(resource, Mapping):
            raise ResourceEvaluationError("a FHIR resource must be a JSON object")
        if resource.get("resourceType") != self.resource:
            return []
        env = self._base_env.copy()
        env["resource"] = env["rootResource"] = env["context"] = resource
        env["rowIndex"] = 0
        if self._uses_clock:
            fhirpath_clock.reset()  # type: ignore[no-untyped-call]
        try:
            for condition in self._where:
                if not condition.condition(resource, env):
                    return []
            tuples = self._root.rows(resource, env, 0)
        except _ExprFailure as exc:
            rid = resource.get("id")
            raise ResourceEvaluationError(
                exc.detail,
                path=exc.path,
                resource_type=self.resource,
                resource_id=rid if isinstance(rid, str) else None,
            ) from exc
        names = self._names
        return [dict(zip(names, row, strict=True)) for row in tuples]

    def evaluate(self, resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Rows of every resource in order; a failing resource raises, so callers that must
        keep going should loop over rows() themselves."""
        for resource in resources:
            yield from self.rows(resource)


# --------------------------------------------------------------------------------------------
# Validation and compilation


def _fail(path: str, message: str) -> NoReturn:
    raise ViewDefinitionError(path, message)


def _sequence(value: object, path: str, *, non_empty: bool = False) -> Sequence[Any]:
    if not isinstance(value, list):
        _fail(path, "must be an array")
    if non_empty and not value:
        _fail(path, "must not be empty")
    return value


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path, "must be an object")
    return value


def _optional_str(value: object, path: str) -> str | None:
    if value is not None and not isinstance(value, str):
        _fail(path, "must be a string")
    return value


def _model_for(view: Mapping[str, Any]) -> Mapping[str, Any]:
    """Pick fhirpathpy's model (choice types, type names) from the view's fhirVersion."""
    versions = view.get("fhirVersion")
    chosen = "r4"
    if isinstance(versions, list):
        names = [_FHIR_MODELS.get(str(v).split(".", 1)[0]) for v in versions]
        known = [name for name in names if name is not None]
        if known and "r4" not in known:
            chosen = known[0]
    model: Mapping[str, Any] = fhirpath_models[chosen]
    return model


def _constant_value(entry: Mapping[str, Any], path: str) -> tuple[str, Any]:
    name = entry.get("name")
    if not isinstance(name, str) or not _SQL_NAME.fullmatch(name):
        _fail(f"{path}.name", "must be a name matching [A-Za-z][A-Za-z0-9_]*")
    if name in _RESERVED_ENV:
        _fail(f"{path}.name", f"%{name} is reserved")
    keys = [key for key in entry if key.startswith("value")]
    if len(keys) != 1:
        _fail(path, f"constant {name!r} needs exactly one value[x], found {len(keys)}")
    key = keys[0]
    kind = key[len("value") :]
    raw = entry[key]
    where = f"{path}.{key}"
    if kind not in _CONSTANT_TYPES:
        _fail(where, f"unsupported constant type {kind!r}")
    if kind == "Boolean":
        if not isinstance(raw, bool):
            _fail(where, "must be a boolean")
        return name, raw
    if kind in _INTEGER_CONSTANTS:
        if isinstance(raw, bool) or not isinstance(raw, int):
            _fail(where, "must be an integer")
        return name, raw
    if kind == "Integer64":
        try:
            return name, int(str(raw))
        except ValueError:
            _fail(where, "must be an integer")
    if kind == "Decimal":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
            _fail(where, "must be a decimal")
        try:
            return name, Decimal(str(raw))
        except InvalidOperation:
            _fail(where, "must be a decimal")
    if not isinstance(raw, str):
        _fail(where, "must be a string")
    if kind in _TEMPORAL_CONSTANTS:
        parsed = FP_Time(raw) if kind == "Time" else FP_DateTime(raw)  # type: ignore[no-untyped-call]
        if parsed is None:
            _fail(where, f"{raw!r} is not a valid {kind[0].lower()}{kind[1:]}")
        return name, parsed
    return name, raw


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_Placed = tuple[ViewColumn, str]  # a column and the JSON path that defined it


class _Compiler:
    """Walks the ViewDefinition once, validating as it builds the select tree."""

    def __init__(self, view: Mapping[str, Any], fast: bool) -> None:
        self.model = _model_for(view)
        self.fast = fast
        self.constants: dict[str, Any] = {}
        self.env_names: frozenset[str] = frozenset()
        self.row_index_columns: set[str] = set()
        self.uses_clock = False

    def expr(self, source: object, path: str) -> _Expr:
        if not isinstance(source, str):
            _fail(path, "FHIRPath expression must be a string")
        compiled = _Expr(source, path, self.model, self.fast)
        compiled.check_names(self.env_names)
        self.uses_clock = self.uses_clock or compiled.uses_clock
        return compiled

    def load_constants(self, raw: object) -> None:
        if raw is not None:
            for i, entry in enumerate(_sequence(raw, "constant")):
                path = f"constant[{i}]"
                name, value = _constant_value(_mapping(entry, path), path)
                if name in self.constants:
                    _fail(f"{path}.name", f"duplicate constant {name!r}")
                self.constants[name] = value
        self.env_names = frozenset(self.constants) | _RESERVED_ENV

    def column(self, raw: object, path: str) -> tuple[_Column, ViewColumn]:
        spec = _mapping(raw, path)
        unknown = sorted(set(spec) - _COLUMN_KEYS)
        if unknown:
            _fail(path, f"unknown column element(s) {', '.join(unknown)}")
        name = spec.get("name")
        if not isinstance(name, str) or not _SQL_NAME.fullmatch(name):
            _fail(f"{path}.name", f"{name!r} is not a valid column name ([A-Za-z][A-Za-z0-9_]*)")
        collection = spec.get("collection", False)
        if not isinstance(collection, bool):
            _fail(f"{path}.collection", "must be a boolean")
        column_type = _optional_str(spec.get("type"), f"{path}.type")
        description = _optional_str(spec.get("description"), f"{path}.description")
        if "path" not in spec:
            _fail(f"{path}.path", "is required")
        expr = self.expr(spec["path"], f"{path}.path")
        if expr.source.strip() == "%rowIndex":
            self.row_index_columns.add(name)
        meta = ViewColumn(name, column_type, collection, description)
        return _Column(name, expr, collection), meta

    def select(self, raw: object, path: str) -> tuple[_Select, list[_Placed]]:
        """Compile one select; returns it with its columns in output order."""
        spec = _mapping(raw, path or "$")
        unknown = sorted(set(spec) - _SELECT_KEYS)
        if unknown:
            _fail(path, f"unknown select element(s) {', '.join(unknown)}")
        modes = [key for key in (_FOR_EACH, _FOR_EACH_OR_NULL, _REPEAT) if key in spec]
        if len(modes) > 1:
            _fail(path, f"only one of forEach, forEachOrNull, repeat is allowed, got {modes}")
        kind = modes[0] if modes else _PLAIN
        iterate: tuple[_Expr, ...] = ()
        if kind == _REPEAT:
            repeat_path = _join(path, _REPEAT)
            paths = _sequence(spec[_REPEAT], repeat_path, non_empty=True)
            iterate = tuple(self.expr(p, f"{repeat_path}[{i}]") for i, p in enumerate(paths))
        elif kind != _PLAIN:
            iterate = (self.expr(spec[kind], _join(path, kind)),)

        own: list[_Column] = []
        placed: list[_Placed] = []
        defined: dict[str, str] = {}

        def take(columns: Sequence[_Placed]) -> None:
            for meta, where in columns:
                if meta.name in defined:
                    _fail(where, f"column {meta.name!r} is already defined at {defined[meta.name]}")
                defined[meta.name] = where
            placed.extend(columns)

        column_path = _join(path, "column")
        for i, raw_column in enumerate(_sequence(spec.get("column", []), column_path)):
            compiled, meta = self.column(raw_column, f"{column_path}[{i}]")
            own.append(compiled)
            take([(meta, f"{column_path}[{i}]")])

        selects: list[_Select] = []
        select_path = _join(path, "select")
        for i, raw_select in enumerate(_sequence(spec.get("select", []), select_path)):
            nested, nested_columns = self.select(raw_select, f"{select_path}[{i}]")
            selects.append(nested)
            take(nested_columns)

        union: list[_Select] = []
        if "unionAll" in spec:
            union_path = _join(path, "unionAll")
            first: list[_Placed] | None = None
            for i, raw_branch in enumerate(_sequence(spec["unionAll"], union_path, non_empty=True)):
                branch, columns = self.select(raw_branch, f"{union_path}[{i}]")
                if first is None:
                    first = columns
                else:
                    expected = [meta.name for meta, _ in first]
                    actual = [meta.name for meta, _ in columns]
                    if actual != expected:
                        _fail(
                            f"{union_path}[{i}]",
                            "unionAll branches must have the same columns in the same order: "
                            f"{expected} vs {actual}",
                        )
                union.append(branch)
            take(first or [])

        null_row = tuple(0 if meta.name in self.row_index_columns else None for meta, _ in placed)
        compiled_select = _Select(
            kind=kind,
            iterate=iterate,
            columns=tuple(own),
            selects=tuple(selects),
            union=tuple(union),
            null_row=null_row,
        )
        return compiled_select, placed


def compile_view(view: Mapping[str, Any], *, fast_paths: bool = True) -> CompiledView:
    """Validate a ViewDefinition and parse each of its FHIRPath expressions once.

    Raises ViewDefinitionError naming the JSON path of the first problem.  `fast_paths=False`
    sends every expression through fhirpathpy (used to cross-check the member-chain shortcut).
    """
    _mapping(view, "$")
    if not view:
        _fail("$", "ViewDefinition is empty")
    resource_type = view.get("resourceType")
    if resource_type is not None and resource_type != "ViewDefinition":
        _fail("resourceType", f"expected 'ViewDefinition', got {resource_type!r}")
    resource = view.get("resource")
    if resource is None:
        _fail("resource", "is required")
    if not isinstance(resource, str) or not _RESOURCE_NAME.fullmatch(resource):
        _fail("resource", f"{resource!r} is not a FHIR resource type")
    name = _optional_str(view.get("name"), "name")
    if name is not None and not _SQL_NAME.fullmatch(name):
        _fail("name", f"{name!r} must match [A-Za-z][A-Za-z0-9_]* to be usable as a table name")

    compiler = _Compiler(view, fast_paths)
    compiler.load_constants(view.get("constant"))
    raw_selects = _sequence(view.get("select"), "select", non_empty=True)

    where = tuple(
        compiler.expr(_mapping(entry, f"where[{i}]").get("path"), f"where[{i}].path")
        for i, entry in enumerate(_sequence(view.get("where", []), "where"))
    )
    root, placed = compiler.select({"select": list(raw_selects)}, "")
    return CompiledView(
        resource=resource,
        name=name,
        columns=tuple(meta for meta, _ in placed),
        root=root,
        where=where,
        base_env={**_STANDARD_ENV, **compiler.constants},
        uses_clock=compiler.uses_clock,
    )
