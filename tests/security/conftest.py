"""Fixtures the security probes share with the suites they probe (imported, so pytest sees them)."""

from tests.catalog.publishing.conftest import export_dir, patients_version
from tests.policies.conftest import Estate, estate

__all__ = ["Estate", "estate", "export_dir", "patients_version"]
