"""Grants: what approved requests let organisations read."""
