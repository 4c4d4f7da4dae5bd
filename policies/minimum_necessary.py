"""Minimum necessary: the facts the tier rules of model.conf read, and the one check over them.

Used when a request is filed, when it is approved and at every read of the grant, so a grant
that is created can be served and one that no longer satisfies the rules is not.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from catalog.kernel.errors import Forbidden
from catalog.products.models import Tier
from policies.duas.models import Dua
from policies.duas.service import dua_active, dua_covers
from policies.enforcer import PolicyEngine, PolicyRules
from policies.grants.models import Grant
from policies.models import Purpose

FULL_PURPOSES = {Purpose.OPERATIONS, Purpose.QUALITY_IMPROVEMENT}


class PolicyRefusal(Forbidden):
    """The minimum-necessary rules refuse a request; the detail says which rule."""

    slug, title = "policy-refused", "Refused by policy"


@dataclass(frozen=True)
class TierRuleFacts:
    """Attributes the tier rules in model.conf read (r2.ctx.*)."""

    dua_active: bool
    dua_covers_product: bool
    dua_permits_tier: bool
    purpose_matches_dua: bool
    purpose_allows_full: bool
    has_justification: bool


# What each fact the tier rules can read means when it does not hold. The rules themselves are
# the p2 lines of the policy (policy.csv, editable at run time): a refusal names the facts of
# those lines that are false, so the words follow the rules and never restate them.
UNMET: dict[str, str] = {
    "dua_active": "the DUA is not in force (not yet effective, expired or revoked)",
    "dua_covers_product": "the DUA does not cover the product",
    "dua_permits_tier": "the DUA does not permit the {tier} tier",
    "purpose_matches_dua": "the request's purpose differs from the DUA's",
    "purpose_allows_full": "the {tier} tier needs purpose operations or quality-improvement",
    "has_justification": "the {tier} tier needs a justification",
}
_FACT = re.compile(r"r2\.ctx\.([a-z_]+)")


def unmet_rules(conditions: list[str], facts: TierRuleFacts, tier: Tier) -> list[str]:
    """Why no condition of `tier` holds for `facts`, in words: for a condition that is a
    conjunction of facts, each false fact; for any other condition, the condition itself."""
    if not conditions:
        return [f"no tier rule allows the {tier} tier"]
    out: list[str] = []
    for condition in conditions:
        atoms = [part.strip() for part in condition.split(" and ")]
        names = [m.group(1) if (m := _FACT.fullmatch(atom)) else None for atom in atoms]
        if None in names or not all(hasattr(facts, str(name)) for name in names):
            reasons = [f"the rule '{condition}' is not met"]
        else:
            reasons = [
                UNMET.get(str(name), f"{name} does not hold").format(tier=tier)
                for name in names
                if not getattr(facts, str(name))
            ]
        out += [reason for reason in reasons if reason not in out]
    return out


def tier_rule_facts(
    dua: Dua, *, product: str, tier: Tier, purpose: Purpose, justification: str, now: datetime
) -> TierRuleFacts:
    """The minimum-necessary context of `tier` of `product` under `dua`: the one builder, used
    when a request is filed, when it is approved and at every read of the grant."""
    return TierRuleFacts(
        dua_active=dua_active(dua, now),
        dua_covers_product=dua_covers(dua, product),
        dua_permits_tier=str(tier) in dua.tiers,
        purpose_matches_dua=purpose == dua.purpose,
        purpose_allows_full=purpose in FULL_PURPOSES,
        has_justification=len(justification.strip()) >= 10,
    )


def check_minimum_necessary(
    policy: PolicyEngine | PolicyRules,
    dua: Dua,
    *,
    product: str,
    tier: Tier,
    purpose: Purpose,
    justification: str,
    now: datetime,
) -> None:
    """Refuse, naming every unmet rule, unless the policy allows `tier` of `product`."""
    context = tier_rule_facts(
        dua, product=product, tier=tier, purpose=purpose, justification=justification, now=now
    )
    if not policy.tier_allowed(str(tier), context):
        reasons = unmet_rules(policy.tier_conditions(str(tier)), context, tier)
        raise PolicyRefusal(f"{tier} access to {product} refused: " + "; ".join(reasons))


def check_grant(
    policy: PolicyEngine | PolicyRules,
    grant: Grant,
    dua: Dua,
    *,
    purpose: Purpose,
    product: str,
    now: datetime,
) -> None:
    """The minimum-necessary rules over a grant's own fields (its tier and justification, its
    DUA, its request's purpose): checked before an approval creates the grant and at every
    read, so a grant that is created can be served."""
    check_minimum_necessary(
        policy,
        dua,
        product=product,
        tier=grant.tier,
        purpose=purpose,
        justification=grant.justification,
        now=now,
    )
