"""Governance: Casbin-enforced roles and tiers, data use agreements, access requests and grants."""
