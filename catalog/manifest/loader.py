"""Read a products file into a validated `Manifest`, reporting errors as FILE:LINE: path: message.

PyYAML's node tree keeps line numbers; we build Python values from it ourselves so that every
value's path maps back to its line, duplicate keys are refused instead of silently overwritten,
and alias expansion and nesting are bounded (a "billion laughs" file stops early).
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from catalog.kernel.errors import FieldError, ValidationFailed
from catalog.manifest.models import Manifest
from catalog.products.semver import SemVer

PathKey = tuple[str | int, ...]


class ManifestError(ValidationFailed):
    """A products file that cannot be applied as written."""

    slug, title = "invalid-products-file", "Invalid products file"

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{self.format(first)}{more}", errors=errors)

    def format(self, error: FieldError) -> str:
        """`FILE:LINE: path: message`, the way compilers report."""
        where = f"{self.source}:{error.line}" if error.line else self.source
        path = f" {error.path}:" if error.path else ""
        return f"{where}:{path} {error.message}"

    def lines(self) -> list[str]:
        """Every error, formatted."""
        return [self.format(e) for e in self.errors]


def format_path(path: PathKey) -> str:
    """`domains[0].products[2].name` from ('domains', 0, 'products', 2, 'name')."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Builder:
    """Turns a YAML node tree into plain values plus a path -> line map, within limits."""

    def __init__(self, source: str, *, max_nodes: int, max_depth: int) -> None:
        self.source = source
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.nodes = 0
        self.lines: dict[PathKey, int] = {}
        self._scalars = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, path: PathKey, message: str) -> ManifestError:
        return ManifestError(
            self.source, [FieldError(format_path(path), message, node.start_mark.line + 1)]
        )

    def build(self, node: yaml.Node, path: PathKey = ()) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise self.fail(
                node,
                path,
                f"file expands to more than {self.max_nodes} values (check for runaway aliases)",
            )
        if len(path) > self.max_depth:
            raise self.fail(node, path, f"nesting deeper than {self.max_depth} levels")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._scalars.construct_object(node)
            except yaml.YAMLError as exc:
                raise self.fail(node, path, f"invalid value: {exc}") from None
        raise self.fail(node, path, "unsupported YAML node")

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, path, "merge keys (<<) are not supported")
            key = self.build(key_node, (*path, "<key>"))
            if not isinstance(key, str):
                raise self.fail(key_node, path, f"keys must be strings, got {key!r}")
            if key in out:
                raise self.fail(key_node, (*path, key), f"duplicate key {key!r}")
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key))
            self.lines[(*path, key)] = key_node.start_mark.line + 1
        return out


def _line_for(lines: dict[PathKey, int], loc: PathKey) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _message(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_type" and isinstance(error.get("input"), int | float):
        message += f" (got the number {error['input']!r}; quote it in YAML, e.g. '1.0.0')"
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "required field is missing"
    return message


def _duplicates(manifest: Manifest, lines: dict[PathKey, int], source: str) -> list[FieldError]:
    errors: list[FieldError] = []

    def check(items: list[str], prefix: PathKey, field: str, what: str) -> None:
        seen: set[str] = set()
        for i, value in enumerate(items):
            if value in seen:
                loc = (*prefix, i, field)
                errors.append(
                    FieldError(
                        format_path(loc),
                        f"{what} {value!r} is declared twice",
                        _line_for(lines, loc),
                    )
                )
            seen.add(value)

    check([d.name for d in manifest.domains], ("domains",), "name", "domain")
    for di, domain in enumerate(manifest.domains):
        check([p.name for p in domain.products], ("domains", di, "products"), "name", "product")
        for pi, product in enumerate(domain.products):
            check(
                [v.version for v in product.versions],
                ("domains", di, "products", pi, "versions"),
                "version",
                "version",
            )
    return errors


def _references(manifest: Manifest, lines: dict[PathKey, int]) -> list[FieldError]:
    """`references` between products of one file: declared earlier, column there, same type.

    A referenced product the file does not declare may already be in the catalog; applying the
    file checks it there (the same rules, refused with the version).
    """
    errors: list[FieldError] = []
    for di, domain in enumerate(manifest.domains):
        order = {p.name: i for i, p in enumerate(domain.products)}
        for pi, product in enumerate(domain.products):
            for vi, version in enumerate(product.versions):
                for ci, column in enumerate(version.columns):
                    if not column.references:
                        continue
                    loc: PathKey = (
                        *("domains", di, "products", pi, "versions", vi),
                        *("columns", ci, "references"),
                    )
                    name, target = column.references.split(".", 1)

                    def fail(message: str, loc: PathKey = loc) -> None:
                        errors.append(FieldError(format_path(loc), message, _line_for(lines, loc)))

                    if name == product.name:
                        fail("a column references another product, not its own")
                        continue
                    if name not in order:
                        continue
                    if order[name] > pi:
                        fail(
                            f"{column.references}: declare {name} before {product.name}, "
                            "which references it (products are applied in file order)"
                        )
                        continue
                    versions = domain.products[order[name]].versions
                    if not versions:
                        continue
                    newest = max(versions, key=lambda v: SemVer.parse(v.version))
                    declared = {c.name: c.type for c in newest.columns}
                    if target not in declared:
                        fail(
                            f"{column.references}: {name} {newest.version} has no column "
                            f"{target!r} (it has {', '.join(declared)})"
                        )
                    elif declared[target] != column.type:
                        fail(
                            f"{column.references}: {name}.{target} is {declared[target]}, not "
                            f"{column.type}: the values could never match"
                        )
    return errors


def parse_manifest(
    text: str, *, source: str, max_nodes: int = 200_000, max_depth: int = 32
) -> Manifest:
    """Validate products-file text; raise ManifestError listing every problem with its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ManifestError(source, [FieldError("", f"invalid YAML: {problem}", line)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, [FieldError("", f"invalid YAML: {exc}")]) from None
    if root is None:
        raise ManifestError(source, [FieldError("", "file is empty; expected a 'domains:' list")])
    builder = _Builder(source, max_nodes=max_nodes, max_depth=max_depth)
    data = builder.build(root)
    if not isinstance(data, dict):
        raise ManifestError(
            source, [FieldError("", "expected a mapping with a 'domains:' list at the top", 1)]
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(
                format_path(tuple(e["loc"])), _message(e), _line_for(builder.lines, tuple(e["loc"]))
            )
            for e in exc.errors()
        ]
        raise ManifestError(source, errors) from None
    duplicates = _duplicates(manifest, builder.lines, source)
    if duplicates:
        raise ManifestError(source, duplicates)
    references = _references(manifest, builder.lines)
    if references:
        raise ManifestError(source, references)
    return manifest


def load_manifest(
    path: Path, *, max_bytes: int, max_nodes: int = 200_000, max_depth: int = 32
) -> Manifest:
    """Read and validate the products file at `path`."""
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ManifestError(source, [FieldError("", f"cannot read file: {exc.strerror}")]) from None
    if size > max_bytes:
        raise ManifestError(
            source, [FieldError("", f"file is {size} bytes; the limit is {max_bytes} bytes")]
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(source, [FieldError("", "file is not valid UTF-8", line)]) from None
    return parse_manifest(text, source=source, max_nodes=max_nodes, max_depth=max_depth)
