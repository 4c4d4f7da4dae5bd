"""The catalog domain: domains, products, versions, schemas, SLAs and tiers offered."""
