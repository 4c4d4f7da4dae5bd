"""Principals: people and service accounts, their roles and API tokens, consumer organisations."""
