"""Access requests and their decisions."""
