"""Listing helpers shared by the governance lists: keyset pages and the common filters."""

from typing import Any

from sqlmodel import col, select

from catalog.products.models import DataProduct, Domain
from policies.principals.models import Organization


def organization_filter(name: str) -> Any:
    """A `WHERE organization_id = ...` value for a filter naming an organisation.

    An unknown name matches nothing (an empty page), exactly like a real organisation whose rows
    the caller may not see: a filter never tells a caller which organisations exist.
    """
    return select(Organization.id).where(Organization.name == name).scalar_subquery()


def product_filter(ref: str) -> Any:
    """The id of product `domain/name` for a filter; an unknown product matches nothing."""
    domain, _, name = ref.partition("/")
    return (
        select(DataProduct.id)
        .join(Domain, col(Domain.id) == DataProduct.domain_id)
        .where(Domain.name == domain, DataProduct.name == name)
        .scalar_subquery()
    )
