"""Casbin adapter over our own `casbin_rule` table, inside the caller's transaction.

Third-party SQLAlchemy adapters (casbin-sqlalchemy-adapter, sqlalchemy-adapter) open and commit
their own sessions, so a policy change could not share a transaction with the change event that
records it; they also pull in a second copy of the casbin package (pycasbin). This adapter is
the few lines Casbin needs, on the application's session.
"""

from typing import Any

from casbin import persist
from sqlmodel import Session, col, delete, select

from policies.models import CasbinRule

FIELDS = ("v0", "v1", "v2", "v3", "v4", "v5")


def rule_values(rule: CasbinRule) -> list[str]:
    """The non-empty values of a stored rule."""
    values = [getattr(rule, f) for f in FIELDS]
    while values and values[-1] is None:
        values.pop()
    return [v or "" for v in values]


class SessionAdapter(persist.Adapter):  # type: ignore[misc]
    """Loads policy lines from, and writes them to, the session's `casbin_rule` table."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def load_policy(self, model: Any) -> None:
        rows = self.session.exec(select(CasbinRule).order_by(col(CasbinRule.id))).all()
        for rule in rows:
            persist.load_policy_line(", ".join([rule.ptype, *rule_values(rule)]), model)

    def add_policy(self, sec: str, ptype: str, rule: list[str]) -> None:
        values: dict[str, Any] = dict(zip(FIELDS, rule, strict=False))
        self.session.add(CasbinRule(ptype=ptype, **values))
        self.session.flush()

    def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> None:
        stmt = delete(CasbinRule).where(col(CasbinRule.ptype) == ptype)
        for name, value in zip(FIELDS, rule, strict=False):
            stmt = stmt.where(col(getattr(CasbinRule, name)) == value)
        self.session.execute(stmt)

    def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> None:
        stmt = delete(CasbinRule).where(col(CasbinRule.ptype) == ptype)
        for offset, value in enumerate(field_values):
            if value:
                stmt = stmt.where(col(getattr(CasbinRule, FIELDS[field_index + offset])) == value)
        self.session.execute(stmt)

    def save_policy(self, model: Any) -> bool:
        """Replace every stored line with the model's (used when seeding the default policy)."""
        self.session.execute(delete(CasbinRule))
        for sec in ("p", "g"):
            for ptype, assertion in model.model.get(sec, {}).items():
                for rule in assertion.policy:
                    self.add_policy(sec, ptype, rule)
        return True
