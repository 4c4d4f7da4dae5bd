"""Publishing: FHIR Bulk NDJSON into Delta Lake, contract checks, quarantine, tier tables."""
