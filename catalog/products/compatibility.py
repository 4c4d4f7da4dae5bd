"""Schema evolution rules: which changes between versions need which semantic-version bump.

Consumers read products by column name, so removing, renaming, narrowing or tightening a column
breaks them (MAJOR); adding columns or tiers, widening types, relaxing nullability or changing a
privacy classification changes what they receive (at least MINOR); the rest is PATCH.
"""

from dataclasses import dataclass

from catalog.kernel.errors import BreakingChange, FieldError
from catalog.products.arrow_types import is_widening, parse_arrow_type
from catalog.products.models import ColumnSpec, VersionSpec
from catalog.products.semver import Bump, SemVer


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two versions and the bump it needs."""

    bump: Bump
    path: str
    description: str


def diff_versions(old: VersionSpec, new: VersionSpec) -> list[SchemaChange]:
    """Every change from `old` to `new` that needs more than a PATCH bump."""
    changes: list[SchemaChange] = []
    old_cols = {c.name: c for c in old.columns}
    new_cols = {c.name: c for c in new.columns}
    removed = [c for c in old.columns if c.name not in new_cols]
    added = [c for c in new.columns if c.name not in old_cols]
    renamed = _likely_renames(removed, added)
    for old_col, new_col in renamed:
        changes.append(
            SchemaChange(
                Bump.MAJOR,
                f"columns.{old_col.name}",
                f"column '{old_col.name}' renamed to '{new_col.name}'",
            )
        )
    renamed_old = {o.name for o, _ in renamed}
    renamed_new = {n.name for _, n in renamed}
    changes += [
        SchemaChange(Bump.MAJOR, f"columns.{c.name}", f"column '{c.name}' removed")
        for c in removed
        if c.name not in renamed_old
    ]
    changes += [
        SchemaChange(Bump.MINOR, f"columns.{c.name}", f"column '{c.name}' added")
        for c in added
        if c.name not in renamed_new
    ]
    for name, old_col in old_cols.items():
        kept = new_cols.get(name)
        if kept is not None:
            changes += _column_changes(old_col, kept)
    for tier in old.tiers:
        if tier not in new.tiers:
            changes.append(SchemaChange(Bump.MAJOR, "tiers", f"tier '{tier}' no longer offered"))
    for tier in new.tiers:
        if tier not in old.tiers:
            changes.append(SchemaChange(Bump.MINOR, "tiers", f"tier '{tier}' added"))
    return changes


def _column_changes(old: ColumnSpec, new: ColumnSpec) -> list[SchemaChange]:
    changes: list[SchemaChange] = []
    path = f"columns.{old.name}"
    if old.type != new.type:
        if is_widening(parse_arrow_type(old.type), parse_arrow_type(new.type)):
            changes.append(
                SchemaChange(
                    Bump.MINOR, path, f"column '{old.name}' widened from {old.type} to {new.type}"
                )
            )
        else:
            changes.append(
                SchemaChange(
                    Bump.MAJOR,
                    path,
                    f"column '{old.name}' type narrowed or changed from {old.type} to {new.type}",
                )
            )
    if old.nullable and not new.nullable:
        changes.append(SchemaChange(Bump.MAJOR, path, f"column '{old.name}' made non-nullable"))
    elif not old.nullable and new.nullable:
        changes.append(SchemaChange(Bump.MINOR, path, f"column '{old.name}' made nullable"))
    if old.surrogate != new.surrogate:
        changes.append(
            SchemaChange(
                Bump.MINOR,
                path,
                f"column '{old.name}' surrogate changed from {old.surrogate} to {new.surrogate}",
            )
        )
    if old.classification != new.classification:
        changes.append(
            SchemaChange(
                Bump.MINOR,
                path,
                f"column '{old.name}' classification changed from {old.classification} "
                f"to {new.classification}",
            )
        )
    return changes


def _likely_renames(
    removed: list[ColumnSpec], added: list[ColumnSpec]
) -> list[tuple[ColumnSpec, ColumnSpec]]:
    """Pair a removed and an added column of the same type and classification as a rename."""
    pairs: list[tuple[ColumnSpec, ColumnSpec]] = []
    candidates = list(added)
    for old in removed:
        match = next(
            (
                c
                for c in candidates
                if c.type == old.type and c.classification == old.classification
            ),
            None,
        )
        if match is not None:
            pairs.append((old, match))
            candidates.remove(match)
    return pairs


def check_bump(product: str, old: VersionSpec, new: VersionSpec) -> None:
    """Refuse `new` when its version bump is smaller than its changes need."""
    old_v, new_v = SemVer.parse(old.version), SemVer.parse(new.version)
    bump = new_v.bump_from(old_v)
    changes = diff_versions(old, new)
    needed = max((c.bump for c in changes), default=Bump.PATCH)
    if bump >= needed:
        return
    listed = [c for c in changes if c.bump > bump]
    lines = "; ".join(c.description for c in listed)
    raise BreakingChange(
        f"{product} {new_v} changes {old_v} in ways that need a {needed.name} version bump "
        f"(got a {bump.name} bump): {lines}",
        errors=[FieldError(c.path, c.description) for c in listed],
    )
