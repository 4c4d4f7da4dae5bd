"""Shape of a products file: domains, each with its products, each with its versions."""

from pydantic import BaseModel, ConfigDict, Field

from catalog.products.models import DomainCreate, ProductSpec, VersionSpec


class ManifestProduct(ProductSpec):
    """A product and the versions it declares."""

    versions: list[VersionSpec] = Field(default_factory=list, max_length=1000)


class ManifestDomain(DomainCreate):
    """A domain and the products it owns."""

    products: list[ManifestProduct] = Field(default_factory=list, max_length=5000)


class Manifest(BaseModel):
    """A whole products file."""

    model_config = ConfigDict(extra="forbid")

    domains: list[ManifestDomain] = Field(min_length=1, max_length=1000)
