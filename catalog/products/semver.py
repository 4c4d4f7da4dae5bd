"""Semantic versions of data products: `MAJOR.MINOR.PATCH`, no leading zeros."""

import re
from dataclasses import dataclass
from enum import IntEnum

from catalog.kernel.errors import InvalidVersion

_SEMVER = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")


class Bump(IntEnum):
    """How much a version moved (or must move) relative to its predecessor."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3


@dataclass(frozen=True, order=True)
class SemVer:
    """A parsed semantic version, ordered numerically (1.10.0 > 1.9.0)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> "SemVer":
        """Parse `MAJOR.MINOR.PATCH` or raise InvalidVersion."""
        m = _SEMVER.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise InvalidVersion(
                f"invalid version {text!r}: expected semantic version MAJOR.MINOR.PATCH "
                "such as 1.4.0 (numbers without leading zeros)"
            )
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))

    def bump_from(self, older: "SemVer") -> Bump:
        """Which component changed going from `older` to this (newer) version."""
        if self.major != older.major:
            return Bump.MAJOR
        if self.minor != older.minor:
            return Bump.MINOR
        if self.patch != older.patch:
            return Bump.PATCH
        return Bump.NONE

    def next_patch(self) -> "SemVer":
        """The following patch version."""
        return SemVer(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def is_semver(text: str) -> bool:
    """True when `text` is a valid semantic version."""
    return isinstance(text, str) and _SEMVER.fullmatch(text) is not None
