"""The security probes reuse the governed estate of the policies tests."""

from tests.policies.conftest import Estate, estate

__all__ = ["Estate", "estate"]
