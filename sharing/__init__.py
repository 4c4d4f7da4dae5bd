"""Delta Sharing protocol server: recipients read granted tiers with any standard client."""
