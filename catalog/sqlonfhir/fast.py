"""The FHIRPath subset real views use, compiled into Python closures over parsed JSON.

Each compiled path is a function from a list of JSON values (the focus) to a list of JSON
values. Compilation (:func:`compile_path`) raises :class:`Unsupported` for anything outside the
subset; a compiled function raises :class:`Fallback` at run time when the data is outside what
it models exactly (primitive-extension shadows, nulls inside arrays, multi-item comparisons,
choice elements of another type than the one asked for, ...). Either way the caller hands the
expression -- or the whole resource -- to the general evaluator in
:mod:`catalog.sqlonfhir.views`, so results never differ from it.

The subset: member chains typed with fhirpathpy's own model (so `value.ofType(Quantity)` finds
`valueQuantity` exactly as fhirpathpy does), `first()`, `exists()`, `empty()`, `where(<path> =
'literal' | %constant)` on string-typed elements, `ofType(T)` on choice elements,
`extension('url')`, `getResourceKey()` and `getReferenceKey([T])`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from catalog.sqlonfhir.views import _reference_key, _resource_key

__all__ = [
    "Cell",
    "Fallback",
    "Path",
    "Steps",
    "Unsupported",
    "cell",
    "compile_path",
    "compile_steps",
    "plain_values",
    "row_function",
]

AstNode = dict[str, Any]
Path = Callable[[list[Any]], list[Any]]
# One focus item -> what a column (or a where criterion) makes of the path's result.
Cell = Callable[[Any], Any]


class Unsupported(Exception):
    """Compile time: this expression is outside the fast subset."""


class Fallback(Exception):
    """Run time: this data is outside what the fast code models; use the general evaluator."""


_NON_NAVIGABLE: Final = frozenset({"Resource", "DomainResource"})
# Element types whose `=` is plain string equality in fhirpathpy (no temporal/quantity rules).
_STRING_TYPES: Final = frozenset(
    {"string", "code", "uri", "url", "id", "canonical", "oid", "uuid", "markdown", "base64Binary"}
)


def _identifier(node: AstNode) -> str:
    if node.get("type") != "Identifier":
        raise Unsupported("not an identifier")
    text = node.get("text")
    if not isinstance(text, str) or not text or '"' in text or "`" in text:
        raise Unsupported("quoted identifier")
    return text


def _children(node: AstNode) -> list[AstNode]:
    children = node.get("children") or []
    if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
        raise Unsupported("malformed node")
    return children


def _only(node: AstNode, node_type: str) -> AstNode:
    children = _children(node)
    if len(children) != 1 or children[0].get("type") != node_type:
        raise Unsupported(f"expected {node_type}")
    return children[0]


def _string_literal(node: AstNode, constants: Mapping[str, Any]) -> str:
    """A 'quoted' literal without escapes, or a %constant whose value is a string."""
    if node.get("type") != "TermExpression":
        raise Unsupported("not a term")
    (term,) = _children(node) or [{}]
    if term.get("type") == "LiteralTerm":
        literal = _only(term, "StringLiteral")
        text = literal.get("text")
        if not isinstance(text, str) or len(text) < 2 or "\\" in text:
            raise Unsupported("string literal with escapes")
        if text[0] != "'" or text[-1] != "'":
            raise Unsupported("not a string literal")
        return text[1:-1]
    if term.get("type") == "ExternalConstantTerm":
        constant = _only(term, "ExternalConstant")
        name = _identifier(_children(constant)[0])
        value = constants.get(name)
        if type(value) is not str:
            raise Unsupported("non-string constant")
        return value
    raise Unsupported("not a literal")


def _steps(node: AstNode) -> list[AstNode]:
    """Flatten `a.b.c()` (left-deep InvocationExpressions) into its invocation nodes."""
    node_type = node.get("type")
    if node_type == "TermExpression":
        children = _children(node)
        if len(children) == 1 and children[0].get("type") == "ParenthesizedTerm":
            return [children[0]]
        term = _only(node, "InvocationTerm")
        return [_children(term)[0]] if len(_children(term)) == 1 else _unsupported()
    if node_type == "InvocationExpression":
        children = _children(node)
        if len(children) != 2:
            raise Unsupported("invocation arity")
        return [*_steps(children[0]), children[1]]
    raise Unsupported(f"{node_type} is not a path")


def _unsupported() -> list[AstNode]:
    raise Unsupported("shape")


def _call(node: AstNode) -> tuple[str, list[AstNode]]:
    functn = _only(node, "Functn")
    children = _children(functn)
    name = _identifier(children[0])
    params = _children(children[1]) if len(children) > 1 else []
    return name, params


def _type_name(node: AstNode) -> str:
    text = node.get("text")
    if not isinstance(text, str) or not text.isidentifier():
        raise Unsupported("type specifier")
    return text


class _Typing:
    """fhirpathpy's model: element path -> type, choice elements, paths defined elsewhere."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self.elsewhere: Mapping[str, str] = model["pathsDefinedElsewhere"]
        self.choices: Mapping[str, list[str]] = model["choiceTypePaths"]
        self.path2type: Mapping[str, str] = model["path2Type"]
        self.parents: Mapping[str, str] = model["type2Parent"]

    def derives(self, suffix: str, wanted: str) -> bool:
        """Whether the choice type `suffix` (`Age`, `Code`) is `wanted` or a subtype of it."""
        for name in {suffix, suffix[0].lower() + suffix[1:]}:
            seen = 0
            while name and seen < 32:
                if name == wanted:
                    return True
                name = self.parents.get(name, "")
                seen += 1
        return False

    def child(self, current: str, key: str) -> str:
        child = f"{current}.{key}"
        return self.elsewhere.get(child, child)

    def member_type(self, child: str, key: str) -> str:
        if key == "extension":
            child = "Extension"
        found = self.path2type.get(child, child)
        if found in _NON_NAVIGABLE:
            raise Unsupported("navigates into a contained resource")
        return found


def _member(key: str) -> Path:
    shadow = "_" + key

    def member(items: list[Any]) -> list[Any]:
        if len(items) == 1 and type(items[0]) is dict:  # the usual focus: one element
            element = items[0]
            if shadow in element:
                raise Fallback
            value = element.get(key)
            if value is None:
                return []
            if type(value) is list:
                for item in value:
                    if item is None or type(item) is list:
                        raise Fallback
                return value[:]
            return [value]
        out: list[Any] = []
        for element in items:
            if type(element) is dict:
                if shadow in element:
                    raise Fallback
                value = element.get(key)
                if value is None:
                    continue
                if type(value) is list:
                    for item in value:
                        if item is None or type(item) is list:
                            raise Fallback
                    out.extend(value)
                else:
                    out.append(value)
            elif element is None or type(element) is list:
                raise Fallback
        return out

    return member


def _choice(key: str, subtypes: tuple[str, ...], others: tuple[str, ...]) -> Path:
    """`x.ofType(T)` on a choice element: the `xT` key. The general evaluator decides when a
    subtype's key (valueAge for ofType(Quantity)) or a shadow is present, or when the `xT` value
    comes with a type of `x` that fhirpathpy's model order puts first (`others`)."""
    always = frozenset(("_" + key, *subtypes, *("_" + s for s in subtypes)))
    with_value = frozenset((*others, *("_" + other for other in others)))

    def choice(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for element in items:
            if type(element) is dict:
                if not always.isdisjoint(element):
                    raise Fallback
                value = element.get(key)
                if value is None:
                    continue
                if type(value) is list or not with_value.isdisjoint(element):
                    raise Fallback
                out.append(value)
            elif element is None or type(element) is list:
                raise Fallback
        return out

    return choice


def _first(items: list[Any]) -> list[Any]:
    return items[:1]


def _exists(items: list[Any]) -> list[Any]:
    return [bool(items)]


def _empty(items: list[Any]) -> list[Any]:
    return [not items]


def _resource_keys(items: list[Any]) -> list[Any]:
    key = _resource_key(items[0]) if items else None
    return [] if key is None else [key]


def _reference_keys(wanted: str | None) -> Path:
    def reference_keys(items: list[Any]) -> list[Any]:
        if len(items) == 1:
            key = _reference_key(items[0], wanted)
            return [] if key is None else [key]
        keys = (_reference_key(element, wanted) for element in items)
        return [key for key in keys if key is not None]

    return reference_keys


def _extension(url: str) -> Path:
    def extension(items: list[Any]) -> list[Any]:
        found: list[Any] = []
        for element in items:
            if type(element) is not dict:
                continue
            extensions = element.get("extension")
            if extensions is None:
                continue
            if type(extensions) is not list:
                raise Fallback
            found.extend(e for e in extensions if type(e) is dict and e.get("url") == url)
        return found

    return extension


def _where(condition: Path) -> Path:
    def where(items: list[Any]) -> list[Any]:
        kept: list[Any] = []
        for item in items:
            if type(item) is not dict:
                raise Fallback
            verdict = condition([item])
            if not verdict:
                continue
            if len(verdict) != 1 or type(verdict[0]) is not bool:
                raise Fallback
            if verdict[0]:
                kept.append(item)
        return kept

    return where


def _where_equals(key: str, right: str) -> Path:
    """`where(key = 'literal')` on a string-typed member: `_where(_equals(_member(key), ...))`
    in one step, with the same results and the same Fallback cases."""
    shadow = "_" + key

    def where_equals(items: list[Any]) -> list[Any]:
        kept: list[Any] = []
        for item in items:
            if type(item) is not dict or shadow in item:
                raise Fallback
            value = item.get(key)
            if value is None:
                continue
            if type(value) is list:
                if not value:
                    continue
                if len(value) != 1:
                    raise Fallback
                value = value[0]
            if type(value) is not str:
                raise Fallback
            if value == right:
                kept.append(item)
        return kept

    return where_equals


def _equals(left: Path, right: str) -> Path:
    def equals(items: list[Any]) -> list[Any]:
        values = left(items)
        if not values:
            return []
        if len(values) != 1 or type(values[0]) is not str:
            raise Fallback
        return [values[0] == right]

    return equals


def _union(left: Path, right: Path) -> Path:
    """`a | b` when at most one item results (more: fhirpathpy's distinct and order decide)."""

    def union(items: list[Any]) -> list[Any]:
        found = left(items) + right(items)
        if len(found) > 1:
            raise Fallback
        return found

    return union


def _chain(functions: list[Path]) -> Path:
    if not functions:
        raise Unsupported("empty path")
    if len(functions) == 1:
        return functions[0]
    steps = tuple(functions)

    def chain(items: list[Any]) -> list[Any]:
        for step in steps:
            items = step(items)
        return items

    return chain


def _single_focus(functions: list[Path], shapes: list[tuple[Any, ...]]) -> Path:
    """`_chain(functions)`, with the usual case -- one focus item -- run by the path's generated
    code (:func:`_cell`, which does exactly what the chain does to it)."""
    chain = _chain(functions)
    one = _cell(functions, shapes, "raw")

    def single_focus(items: list[Any]) -> list[Any]:
        if len(items) == 1:
            focus = items[0]
            if focus is not None and type(focus) is not list:
                found: list[Any] = one(focus)
                return found
        return chain(items)

    return single_focus


def _as_is(items: list[Any]) -> list[Any]:
    return items


# Characters of a FHIR id: a relative reference `Type/id` whose id is made of these (and is at
# most 64 long) is what views._REFERENCE reads as (Type, id).
_ID_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
_TYPE_NAME: Final = re.compile(r"[A-Z][A-Za-z]{0,63}")
_PLAIN_STEPS: Final = frozenset(
    {"member", "choice", "first", "where_equals", "reference_key", "resource_key"}
)
_MAX_CELL_LINES: Final = 400


def _finisher(result: str) -> Callable[[list[Any]], Any]:
    """What a path's collection becomes: the raw collection, the plain values of a
    `collection: true` column, or the one plain value (or None) of a column."""
    if result == "raw":
        return _as_is
    if result == "collection":
        return plain_values

    def single(found: list[Any]) -> Any:
        values = plain_values(found)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        raise Fallback  # the general evaluator raises the "not collection: true" error

    return single


def _cell(functions: list[Path], shapes: list[tuple[Any, ...]], result: str) -> Cell:
    """A path as generated straight-line Python from one focus item to its result.

    `result` is "raw" (the collection), "collection" (its plain values) or "single" (one plain
    value or None). The code does what `_finisher(result)(_chain(functions)([focus]))` does,
    step by step, keeping a single value in a variable and running loops only over the
    collections the data has (a list of codings), with the same Fallback cases.
    """
    writer = _CellWriter(functions, shapes, result)
    writer.step(0, "one", "focus", 1)
    if writer.too_long:  # a long path with many list-or-single branches
        chain, finish = _chain(functions), _finisher(result)
        return lambda focus: finish(chain([focus]))
    source = "\n".join(["def cell(focus):", *writer.lines])
    exec(compile(source, "<fast cell>", "exec"), writer.names)  # noqa: S102
    function: Cell = writer.names["cell"]
    return function


Steps = tuple[list[Path], list[tuple[Any, ...]], str]  # a path's functions, shapes and result


def row_function(cells: list[Steps]) -> Callable[[Any, Any], tuple[Any, ...]]:
    """The cells of several paths from one focus item, as one generated function: each path's
    code of :func:`_cell` inlined in a block of its own (`while True: ... break`), so a row
    costs one call. Raises Unsupported if a path's code is too long to inline."""
    lines = ["def row(focus, env=None):"]  # (env: the signature of a select's own columns)
    names: dict[str, Any] = {}
    for i, (functions, shapes, result) in enumerate(cells):
        writer = _CellWriter(functions, shapes, result, prefix=f"p{i}_", sink=f"c{i}")
        writer.dicts.add("focus")  # a select's focus is always a JSON object
        writer.step(0, "one", "focus", 2)
        if writer.too_long:
            raise Unsupported("path too long to inline")
        lines += ["    while True:", *writer.lines]
        names.update(writer.names)
    lines.append(f"    return ({''.join(f'c{i}, ' for i in range(len(cells)))})")
    exec(compile("\n".join(lines), "<fast row>", "exec"), names)  # noqa: S102
    function: Callable[[Any, Any], tuple[Any, ...]] = names["row"]
    return function


class _CellWriter:
    """Writes the body of a :func:`_cell` function (or, with a `sink`, a block that sets that
    variable and breaks out of its `while True`), step by step. Every name it defines in the
    generated code's namespace, and every local, starts with `prefix`."""

    def __init__(
        self,
        functions: list[Path],
        shapes: list[tuple[Any, ...]],
        result: str,
        *,
        prefix: str = "",
        sink: str | None = None,
    ) -> None:
        self.functions, self.shapes, self.result = functions, shapes, result
        self.prefix, self.sink = prefix, sink
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "Fallback": Fallback,
            "reference_key": _reference_key,
            "ID_CHARS": _ID_CHARS,
            prefix + "finish": _finisher(result),
            prefix + "rest": [
                _chain(functions[k:]) if k < len(functions) else _as_is
                for k in range(len(functions) + 1)
            ],
        }
        self.count = 0
        self.dicts: set[str] = set()  # variables known to hold a dict

    @property
    def too_long(self) -> bool:
        return len(self.lines) > _MAX_CELL_LINES

    def fresh(self) -> str:
        self.count += 1
        return f"{self.prefix}v{self.count}"

    def emit(self, depth: int, *lines: str) -> None:
        self.lines += ["    " * depth + line for line in lines]

    def give(self, depth: int, expression: str) -> None:
        """The path's result is `expression`."""
        if self.sink is None:
            self.emit(depth, f"return {expression}")
        else:
            self.emit(depth, f"{self.sink} = {expression}", "break")

    def empty(self, k: int, depth: int) -> None:
        """The path's result when steps k.. get an empty collection."""
        if all(shape[0] in _PLAIN_STEPS for shape in self.shapes[k:]):
            self.give(depth, "None" if self.result == "single" else "[]")
        else:
            self.give(depth, f"{self.prefix}finish({self.prefix}rest[{k}]([]))")

    def guard(self, keys: tuple[str, ...], var: str) -> str:
        """A test of whether any of `keys` is a key of the dict `var`."""
        if not keys:
            return "False"
        if len(keys) < 4:
            return " or ".join(f"{key!r} in {var}" for key in keys)
        name = self.fresh() + "g"
        self.names[name] = frozenset(keys)
        return f"not {name}.isdisjoint({var})"

    def step(self, k: int, mode: str, var: str, depth: int) -> None:
        """Steps k.. of a value held in `var`: one item (not None, not a list) in mode "one",
        a non-empty list of such items in mode "many"."""
        if len(self.lines) > _MAX_CELL_LINES:
            return
        if k == len(self.shapes):
            self.finish(mode, var, depth)
            return
        shape = self.shapes[k]
        kind = shape[0]
        out = self.fresh()
        if kind in ("member", "choice"):
            key = shape[1]
            if kind == "member":
                guards: tuple[str, ...] = ("_" + key,)
                with_value: tuple[str, ...] = ()
            else:
                guards = ("_" + key, *shape[2], *("_" + s for s in shape[2]))
                with_value = (*shape[3], *("_" + other for other in shape[3]))
            if mode == "one":
                if var not in self.dicts:
                    self.emit(depth, f"if type({var}) is not dict:")
                    self.empty(k + 1, depth + 1)
                self.emit(depth, f"if {self.guard(guards, var)}:", "    raise Fallback")
                self.emit(depth, f"{out} = {var}.get({key!r})", f"if {out} is None:")
                self.empty(k + 1, depth + 1)
                if kind == "choice":
                    test = f"type({out}) is list or {self.guard(with_value, var)}"
                    self.emit(depth, f"if {test}:", "    raise Fallback")
                    self.step(k + 1, "one", out, depth)
                    return
                self.emit(depth, f"if type({out}) is list:")
                self.collection(k, out, depth + 1)
                self.emit(depth, "else:")
                self.step(k + 1, "one", out, depth + 1)
                return
            value = self.fresh()
            self.emit(
                depth,
                f"{out} = []",
                f"for item in {var}:",
                "    if type(item) is dict:",
                f"        if {self.guard(guards, 'item')}:",
                "            raise Fallback",
                f"        {value} = item.get({key!r})",
                f"        if {value} is None:",
                "            continue",
                f"        if type({value}) is list"
                + (f" or {self.guard(with_value, 'item')}:" if kind == "choice" else ":"),
            )
            if kind == "choice":
                self.emit(depth + 3, "raise Fallback")
            else:
                self.emit(
                    depth + 3,
                    f"for inner in {value}:",
                    "    if inner is None or type(inner) is list:",
                    "        raise Fallback",
                    f"{out}.extend({value})",
                    "continue",
                )
            self.emit(
                depth,
                f"        {out}.append({value})",
                "    elif item is None or type(item) is list:",
                "        raise Fallback",
                f"if not {out}:",
            )
            self.empty(k + 1, depth + 1)
            self.step(k + 1, "many", out, depth)
        elif kind == "first":
            if mode == "one":
                self.step(k + 1, "one", var, depth)
            else:
                self.emit(depth, f"{out} = {var}[0]")
                self.step(k + 1, "one", out, depth)
        elif kind in ("exists", "empty"):
            self.emit(depth, f"{out} = {kind == 'exists'}")
            self.step(k + 1, "one", out, depth)
        elif kind == "where_equals":
            key, literal = shape[1], shape[2]
            value = self.fresh()
            if mode == "one":
                self.emit(
                    depth,
                    f"if type({var}) is not dict or {'_' + key!r} in {var}:",
                    "    raise Fallback",
                    f"{value} = {var}.get({key!r})",
                    f"if {value} is None:",
                )
                self.empty(k + 1, depth + 1)
                self.emit(depth, f"if type({value}) is list:", f"    if not {value}:")
                self.empty(k + 1, depth + 2)
                self.emit(
                    depth,
                    f"    if len({value}) != 1:",
                    "        raise Fallback",
                    f"    {value} = {value}[0]",
                    f"if type({value}) is not str:",
                    "    raise Fallback",
                    f"if {value} != {literal!r}:",
                )
                self.empty(k + 1, depth + 1)
                self.step(k + 1, "one", var, depth)
                return
            self.emit(
                depth,
                f"{out} = []",
                f"for item in {var}:",
                f"    if type(item) is not dict or {'_' + key!r} in item:",
                "        raise Fallback",
                f"    {value} = item.get({key!r})",
                f"    if {value} is None:",
                "        continue",
                f"    if type({value}) is list:",
                f"        if not {value}:",
                "            continue",
                f"        if len({value}) != 1:",
                "            raise Fallback",
                f"        {value} = {value}[0]",
                f"    if type({value}) is not str:",
                "        raise Fallback",
                f"    if {value} == {literal!r}:",
                f"        {out}.append(item)",
                f"if not {out}:",
            )
            self.empty(k + 1, depth + 1)
            self.step(k + 1, "many", out, depth)
        elif kind == "resource_key" and mode == "one":
            rid = self.fresh()
            self.emit(
                depth,
                f"{out} = None",
                f"if type({var}) is dict and 'resourceType' in {var}:",
                f"    {rid} = {var}.get('id')",
                f"    if type({rid}) is str and {rid}:",
                f"        {out} = {rid}",
                f"if {out} is None:",
            )
            self.empty(k + 1, depth + 1)
            self.step(k + 1, "one", out, depth)
        elif kind == "reference_key" and mode == "one":
            wanted = shape[1]
            self.names[out + "w"] = wanted
            if wanted is not None and _TYPE_NAME.fullmatch(wanted):
                # Type/id with a plain id, read here; anything else by views._reference_key.
                ref = self.fresh()
                self.emit(
                    depth,
                    f"{out} = None",
                    f"if type({var}) is dict:",
                    f"    {ref} = {var}.get('reference')",
                    f"    if type({ref}) is str:",
                    f"        {ref}, sep, ident = {ref}.partition('/')",
                    f"        if sep and {ref} == {wanted!r} and 0 < len(ident) <= 64"
                    " and not ident.strip(ID_CHARS):",
                    f"            {out} = ident",
                    "        else:",
                    f"            {out} = reference_key({var}, {out}w)",
                    "else:",
                    f"    {out} = reference_key({var}, {out}w)",
                )
            else:
                self.emit(depth, f"{out} = reference_key({var}, {out}w)")
            self.emit(depth, f"if {out} is None:")
            self.empty(k + 1, depth + 1)
            self.step(k + 1, "one", out, depth)
        elif kind == "union" and mode == "one":
            # `(a | b | c)`: each operand's raw collection from the same item; more than one
            # item in all is fhirpathpy's (distinct, order), as _union says.
            calls = []
            for b, (functions, shapes) in enumerate(shape[1]):
                self.names[f"{out}b{b}"] = _cell(functions, shapes, "raw")
                calls.append(f"{out}b{b}({var})")
            self.emit(depth, f"{out} = {' + '.join(calls)}", f"if not {out}:")
            self.empty(k + 1, depth + 1)
            self.emit(
                depth,
                f"if len({out}) != 1:",
                "    raise Fallback",
                f"{out} = {out}[0]",
                f"if {out} is None or type({out}) is list:",
                "    raise Fallback",
            )
            self.step(k + 1, "one", out, depth)
        else:  # anything else: the step's own function on the collection
            self.names[out + "f"] = self.functions[k]
            argument = f"[{var}]" if mode == "one" else var
            self.emit(depth, f"{out} = {out}f({argument})")
            self.collection(k, out, depth)

    def collection(self, k: int, out: str, depth: int) -> None:
        """Steps k+1.. of the list in `out`, its items checked as `_member` checks a list."""
        self.emit(
            depth,
            f"for item in {out}:",
            "    if item is None or type(item) is list:",
            "        raise Fallback",
            f"if not {out}:",
        )
        self.empty(k + 1, depth + 1)
        self.step(k + 1, "many", out, depth)

    def finish(self, mode: str, var: str, depth: int) -> None:
        if self.result == "raw":
            self.give(depth, var if mode == "many" else f"[{var}]")
            return
        if mode == "many":
            self.give(depth, f"{self.prefix}finish({var})")
            return
        if self.result == "single":
            self.emit(depth, f"if type({var}) is str or type({var}) is int or type({var}) is bool:")
            self.give(depth + 1, var)
        self.give(depth, f"{self.prefix}finish([{var}])")


def compile_path(
    node: AstNode, start_type: str, model: Mapping[str, Any], constants: Mapping[str, Any]
) -> tuple[Path, str]:
    """Compile one parsed FHIRPath expression; returns the function and its result type."""
    return _compile(node, start_type, _Typing(model), constants, at_root=True)


def compile_steps(
    node: AstNode,
    start_type: str,
    model: Mapping[str, Any],
    constants: Mapping[str, Any],
    result: str,
) -> Steps:
    """Compile one parsed FHIRPath expression into what :func:`cell` and :func:`row_function`
    generate code from."""
    functions, shapes, _ = _compile_steps(node, start_type, _Typing(model), constants, True)
    return functions, shapes, result


def cell(steps: Steps) -> Cell:
    """The generated function of one compiled path (see :func:`_cell`)."""
    return _cell(*steps)


def _compile(
    node: AstNode, start_type: str, typing: _Typing, constants: Mapping[str, Any], at_root: bool
) -> tuple[Path, str]:
    functions, shapes, current = _compile_steps(node, start_type, typing, constants, at_root)
    return _single_focus(functions, shapes), current


def _compile_steps(
    node: AstNode, start_type: str, typing: _Typing, constants: Mapping[str, Any], at_root: bool
) -> tuple[list[Path], list[tuple[Any, ...]], str]:
    """The functions of a path's steps, what each one is (for the generated code) and the
    path's result type."""
    if node.get("type") in ("EqualityExpression", "UnionExpression"):
        function, current = _compile_operator(node, start_type, typing, constants, at_root)
        if node.get("type") == "UnionExpression":
            operands = _union_operands(node)
            branches = [
                _compile_steps(operand, start_type, typing, constants, at_root)[:2]
                for operand in operands
            ]
            return [function], [("union", branches)], current
        return [function], [("opaque",)], current
    return _compile_chain(node, start_type, typing, constants, at_root)


def _union_operands(node: AstNode) -> list[AstNode]:
    """`a | b | c` (left-deep UnionExpressions) as [a, b, c]."""
    if node.get("type") != "UnionExpression":
        return [node]
    left, right = _children(node)
    return [*_union_operands(left), right]


def _compile_operator(
    node: AstNode, start_type: str, typing: _Typing, constants: Mapping[str, Any], at_root: bool
) -> tuple[Path, str]:
    if node.get("type") == "EqualityExpression":
        if node.get("terminalNodeText") != ["="]:
            raise Unsupported("only = is compiled")
        left_node, right_node = _children(node)
        left, left_type = _compile(left_node, start_type, typing, constants, at_root)
        if left_type not in _STRING_TYPES:
            raise Unsupported("= on a non-string element")
        return _equals(left, _string_literal(right_node, constants)), "boolean"
    if node.get("type") == "UnionExpression":
        if node.get("terminalNodeText") != ["|"]:
            raise Unsupported("union operator")
        left_node, right_node = _children(node)
        left, left_type = _compile(left_node, start_type, typing, constants, at_root)
        right, right_type = _compile(right_node, start_type, typing, constants, at_root)
        return _union(left, right), (left_type if left_type == right_type else "")
    raise Unsupported(f"{node.get('type')} is not an operator")


def _compile_chain(
    node: AstNode, start_type: str, typing: _Typing, constants: Mapping[str, Any], at_root: bool
) -> tuple[list[Path], list[tuple[Any, ...]], str]:
    steps = _steps(node)
    functions: list[Path] = []
    shapes: list[tuple[Any, ...]] = []  # what each function is, for _single_focus
    current = start_type
    keyed = False
    index = 0
    while index < len(steps):
        step = steps[index]
        if keyed:
            raise Unsupported("navigation after a key function")
        kind = step.get("type")
        if kind == "ParenthesizedTerm":
            if index != 0:
                raise Unsupported("parentheses inside a path")
            (inner,) = _children(step) or [{}]
            inner_functions, inner_shapes, current = _compile_steps(
                inner, current, typing, constants, at_root
            )
            if inner_shapes[0][0] == "union":
                functions += inner_functions
                shapes += inner_shapes
            else:
                functions.append(_single_focus(inner_functions, inner_shapes))
                shapes.append(("opaque",))
        elif kind == "MemberInvocation":
            if not current:
                raise Unsupported("navigation from a union of types")
            key = _identifier(_children(step)[0])
            if key[0].isupper():
                raise Unsupported("type filter")
            child = typing.child(current, key)
            choices = typing.choices.get(child)
            if choices is not None:
                following = steps[index + 1] if index + 1 < len(steps) else None
                if following is None or following.get("type") != "FunctionInvocation":
                    raise Unsupported("choice element without ofType")
                name, params = _call(following)
                if name != "ofType" or len(params) != 1:
                    raise Unsupported("choice element without ofType")
                wanted = _type_name(params[0])
                suffix = wanted[0].upper() + wanted[1:]
                if suffix not in choices:
                    raise Unsupported("ofType of a type the element cannot have")
                # Keys of subtypes (valueAge for ofType(Quantity)) would match too; and
                # fhirpathpy reads the first type of its model's order that is present, so with
                # the value, a type before it present means it reads that one instead. Invalid
                # FHIR either way: the general evaluator decides.
                subtypes = tuple(
                    key + s for s in choices if s != suffix and typing.derives(s, wanted)
                )
                others = tuple(key + s for s in choices[: choices.index(suffix)])
                functions.append(_choice(key + suffix, subtypes, others))
                shapes.append(("choice", key + suffix, subtypes, others))
                current = wanted
                index += 2
                continue
            functions.append(_member(key))
            shapes.append(("member", key))
            current = typing.member_type(child, key)
        elif kind == "FunctionInvocation":
            name, params = _call(step)
            if name == "first" and not params:
                functions.append(_first)
                shapes.append(("first",))
            elif name == "exists" and not params:
                functions.append(_exists)
                shapes.append(("exists",))
                current = "boolean"
            elif name == "empty" and not params:
                functions.append(_empty)
                shapes.append(("empty",))
                current = "boolean"
            elif name == "getResourceKey" and not params and at_root and index == 0:
                functions.append(_resource_keys)
                shapes.append(("resource_key",))
                current, keyed = "string", True
            elif name == "getReferenceKey" and len(params) <= 1 and index > 0:
                wanted_type = _type_name(params[0]).strip("'") if params else None
                functions.append(_reference_keys(wanted_type))
                shapes.append(("reference_key", wanted_type))
                current, keyed = "string", True
            elif name == "extension" and len(params) == 1:
                functions.append(_extension(_string_literal(params[0], constants)))
                shapes.append(("opaque",))
                current = "Extension"
            elif name == "where" and len(params) == 1 and index > 0:
                condition, kind_of = _compile(params[0], current, typing, constants, False)
                if kind_of != "boolean":
                    raise Unsupported("where needs a boolean criterion")
                member = _member_equals(params[0])
                if member is not None:
                    literal = _string_literal(_children(params[0])[1], constants)
                    functions.append(_where_equals(member, literal))
                    shapes.append(("where_equals", member, literal))
                else:
                    functions.append(_where(condition))
                    shapes.append(("opaque",))
            else:
                raise Unsupported(f"function {name}()")
        else:
            raise Unsupported(f"{kind}")
        index += 1
    if not functions:
        raise Unsupported("empty path")
    return functions, shapes, current


def _member_equals(node: AstNode) -> str | None:
    """`key = <literal>` with a bare member on the left (compiled already, so well-formed)."""
    if node.get("type") != "EqualityExpression":
        return None
    left = _children(node)[0]
    steps = _steps(left)
    if len(steps) != 1 or steps[0].get("type") != "MemberInvocation":
        return None
    return _identifier(_children(steps[0])[0])


def plain_values(items: list[Any]) -> list[Any]:
    """Cell values as views._plain_values makes them from the same JSON values."""
    out: list[Any] = []
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool:
            out.append(item)
        elif kind is float:
            out.append(Decimal(str(item)))
        elif kind is dict:
            if not (len(item) == 1 and "extension" in item):
                out.append(item)
        elif item is not None:
            raise Fallback
    return out
