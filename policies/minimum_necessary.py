"""Minimum necessary: the facts the tier rules of model.conf read, and the one check over them.

Used when a request is filed, when it is approved and at every read of the grant, so a grant
that is created can be served and one that no longer satisfies the rules is not.
"""

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

    def reasons(self, tier: Tier) -> list[str]:
        """Why a tier is refused, in words."""
        out = []
        if not self.dua_active:
            out.append("the DUA is not in force (not yet effective, expired or revoked)")
        if not self.dua_covers_product:
            out.append("the DUA does not cover the product")
        if not self.dua_permits_tier:
            out.append(f"the DUA does not permit the {tier} tier")
        if not self.purpose_matches_dua:
            out.append("the request's purpose differs from the DUA's")
        if tier == Tier.FULL and not self.purpose_allows_full:
            out.append("the full tier needs purpose operations or quality-improvement")
        if tier == Tier.FULL and not self.has_justification:
            out.append("the full tier needs a justification")
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
        reasons = context.reasons(tier) or ["no tier rule allows it"]
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
