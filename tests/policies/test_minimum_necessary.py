"""Refusal reasons come from the tier rules in force (the p2 policy lines), not a copy of them."""

from __future__ import annotations

from dataclasses import fields, replace

from catalog.products.models import Tier
from policies.enforcer import PolicyLines, PolicyRules, default_policy_lines
from policies.minimum_necessary import TierRuleFacts, unmet_rules

ALL_MET = TierRuleFacts(**{fact.name: True for fact in fields(TierRuleFacts)})


def _rules(p2: dict[str, list[str]] | None = None) -> PolicyRules:
    lines = [tuple(line) for line in default_policy_lines() if p2 is None or line[0] != "p2"]
    for tier, conditions in (p2 or {}).items():
        lines += [("p2", tier, condition) for condition in conditions]
    policy: PolicyLines = tuple(lines)
    return PolicyRules(policy, [])


def _refusal(rules: PolicyRules, tier: Tier, facts: TierRuleFacts) -> list[str] | None:
    if rules.tier_allowed(str(tier), facts):
        return None
    return unmet_rules(rules.tier_conditions(str(tier)), facts, tier)


def test_the_shipped_rules_name_each_unmet_fact() -> None:
    rules = _rules()
    assert _refusal(rules, Tier.DEIDENTIFIED, ALL_MET) is None
    mismatch = replace(ALL_MET, purpose_matches_dua=False)
    assert _refusal(rules, Tier.DEIDENTIFIED, mismatch) == [
        "the request's purpose differs from the DUA's"
    ]
    nothing = TierRuleFacts(False, False, False, False, False, False)
    assert _refusal(rules, Tier.FULL, nothing) == [
        "the DUA is not in force (not yet effective, expired or revoked)",
        "the DUA does not cover the product",
        "the DUA does not permit the full tier",
        "the request's purpose differs from the DUA's",
        "the full tier needs purpose operations or quality-improvement",
        "the full tier needs a justification",
    ]
    # purpose and justification are rules of the full tier only
    assert _refusal(rules, Tier.LIMITED, replace(nothing, dua_active=True)) == [
        "the DUA does not cover the product",
        "the DUA does not permit the limited tier",
        "the request's purpose differs from the DUA's",
    ]


def test_an_edited_rule_changes_the_decision_and_the_words_together() -> None:
    """An estate that lets de-identified data serve any purpose under a DUA in force: the
    purpose no longer refuses, and no refusal mentions it."""
    rules = _rules(
        {
            "deidentified": ["r2.ctx.dua_active and r2.ctx.dua_covers_product"],
            "limited": [
                "r2.ctx.dua_active and r2.ctx.dua_covers_product and r2.ctx.dua_permits_tier"
            ],
        }
    )
    mismatch = replace(ALL_MET, purpose_matches_dua=False, dua_permits_tier=False)
    assert _refusal(rules, Tier.DEIDENTIFIED, mismatch) is None
    assert _refusal(rules, Tier.DEIDENTIFIED, replace(mismatch, dua_active=False)) == [
        "the DUA is not in force (not yet effective, expired or revoked)"
    ]
    assert _refusal(rules, Tier.LIMITED, mismatch) == ["the DUA does not permit the limited tier"]
    assert _refusal(rules, Tier.FULL, ALL_MET) == ["no tier rule allows the full tier"]


def test_a_rule_that_is_not_a_conjunction_is_named_whole() -> None:
    condition = "r2.ctx.dua_active and (r2.ctx.purpose_allows_full or r2.ctx.has_justification)"
    rules = _rules({"full": [condition]})
    facts = replace(ALL_MET, purpose_allows_full=False, has_justification=False)
    assert _refusal(rules, Tier.FULL, facts) == [f"the rule '{condition}' is not met"]
    assert _refusal(rules, Tier.FULL, replace(facts, has_justification=True)) is None


def test_several_rules_for_a_tier_are_alternatives() -> None:
    rules = _rules(
        {
            "limited": [
                "r2.ctx.dua_active and r2.ctx.dua_permits_tier",
                "r2.ctx.dua_active and r2.ctx.has_justification",
            ]
        }
    )
    assert _refusal(rules, Tier.LIMITED, replace(ALL_MET, dua_permits_tier=False)) is None
    both = replace(ALL_MET, dua_permits_tier=False, has_justification=False)
    assert _refusal(rules, Tier.LIMITED, both) == [
        "the DUA does not permit the limited tier",
        "the limited tier needs a justification",
    ]
