"""Catalog REST API: domains, products, versions and their lifecycle under /api/v1."""

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlmodel import Session

from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import (
    LIST_ERRORS,
    READ_ERRORS,
    SEARCH_ERRORS,
    WRITE_ERRORS,
)
from catalog.kernel.routing import action, page_request
from catalog.products import service
from catalog.products.lifecycle import Lifecycle
from catalog.products.models import (
    DomainCreate,
    DomainRead,
    LifecycleChange,
    LifecycleOutcome,
    ProductDetail,
    ProductPage,
    ProductSpec,
    ProductStatus,
    Tier,
    VersionRead,
    VersionSpec,
    VersionStatus,
)

PRODUCT = "/{domain:str}/{name:str}"
WRITE = {"permission": "product:write"}
VERSION_PATH = PRODUCT + "/versions/{version:str}"


class DomainController(Controller):
    """Facilities and clinical domains."""

    path = "/api/v1/domains"
    tags = ("domains",)

    @get("/", sync_to_thread=True, opt={"permission": "catalog:read"}, responses=LIST_ERRORS)
    def list_domains(self, session: NamedDependency[Session]) -> list[DomainRead]:
        """All domains, by name."""
        return [service.domain_read(d) for d in service.list_domains(session)]

    @post("/", sync_to_thread=True, opt={"permission": "domain:create"}, responses=WRITE_ERRORS)
    def create_domain(
        self,
        data: JSONBody[DomainCreate],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> DomainRead:
        """Register a facility or clinical domain."""
        return service.domain_read(service.create_domain(session, data, actor=actor, clock=clock))

    @get(
        "/{domain:str}",
        sync_to_thread=True,
        opt={"permission": "catalog:read"},
        responses=READ_ERRORS,
    )
    def get_domain(self, domain: FromPath[str], session: NamedDependency[Session]) -> DomainRead:
        """One domain."""
        return service.domain_read(service.get_domain(session, domain))

    @post("/{domain:str}/products", sync_to_thread=True, opt=WRITE, responses=WRITE_ERRORS)
    def create_product(
        self,
        domain: FromPath[str],
        data: JSONBody[ProductSpec],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> ProductDetail:
        """Register a product in a domain (publishers of that domain, platform admins)."""
        product = service.create_product(session, domain, data, actor=actor, clock=clock)
        return service.product_detail(product)


class ProductController(Controller):
    """Data products, their versions and lifecycle."""

    path = "/api/v1/products"
    tags = ("products",)
    dependencies = {  # noqa: RUF012 (litestar reads it from the class)
        "lifecycle": Provide(Lifecycle, sync_to_thread=False),
        "page": page_request(cursor_length=1000),  # a product cursor holds names
    }

    @get("/", sync_to_thread=True, opt={"permission": "catalog:read"}, responses=SEARCH_ERRORS)
    def search_products(
        self,
        session: NamedDependency[Session],
        page: NamedDependency[PageRequest],
        q: Annotated[
            str | None,
            QueryParameter(
                max_length=200, description="Words matched in name, title, description, tags."
            ),
        ] = None,
        domain: Annotated[str | None, QueryParameter(max_length=63)] = None,
        tag: Annotated[str | None, QueryParameter(max_length=40)] = None,
        tier: Annotated[Tier | None, QueryParameter()] = None,
        status: Annotated[ProductStatus | None, QueryParameter()] = None,
    ) -> ProductPage:
        """Search products; pass `next_cursor` back as `cursor` for the next page."""
        query = service.ProductQuery(q=q, domain=domain, tag=tag, tier=tier, status=status)
        found = service.search_products(session, query, limit=page.size, cursor=page.cursor)
        return ProductPage(
            items=[service.product_read(p) for p in found.items], next_cursor=found.next_cursor
        )

    @get(PRODUCT, sync_to_thread=True, opt={"permission": "catalog:read"}, responses=READ_ERRORS)
    def get_product(
        self, domain: FromPath[str], name: FromPath[str], session: NamedDependency[Session]
    ) -> ProductDetail:
        """A product with its versions."""
        return service.product_detail(service.get_product(session, domain, name))

    @action(PRODUCT + "/deprecate", opt=WRITE)
    def deprecate_product(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        data: JSONBody[LifecycleChange],
        session: NamedDependency[Session],
        lifecycle: NamedDependency[Lifecycle],
    ) -> ProductDetail:
        """Mark a product deprecated (consumers are told to move on)."""
        product = lifecycle.change_product(
            session, domain, name, ProductStatus.DEPRECATED, data.reason
        )
        return service.product_detail(product)

    @action(PRODUCT + "/retire", opt=WRITE)
    def retire_product(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        data: JSONBody[LifecycleChange],
        session: NamedDependency[Session],
        lifecycle: NamedDependency[Lifecycle],
    ) -> ProductDetail:
        """Retire a product and all its versions; it is no longer served."""
        product = lifecycle.change_product(
            session, domain, name, ProductStatus.RETIRED, data.reason
        )
        return service.product_detail(product)

    @post(PRODUCT + "/versions", sync_to_thread=True, opt=WRITE, responses=WRITE_ERRORS)
    def register_version(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        data: JSONBody[VersionSpec],
        session: NamedDependency[Session],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> VersionRead:
        """Register a new draft version (semantic-versioning rules apply)."""
        product = service.get_product(session, domain, name)
        return service.version_read(
            service.register_version(session, product, data, actor=actor, clock=clock)
        )

    @get(
        VERSION_PATH, sync_to_thread=True, opt={"permission": "catalog:read"}, responses=READ_ERRORS
    )
    def get_version(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        version: FromPath[str],
        session: NamedDependency[Session],
    ) -> VersionRead:
        """One version with its schema and SLA."""
        return service.version_read(service.get_version(session, domain, name, version))

    @action(VERSION_PATH + "/deprecate", opt=WRITE)
    def deprecate_version(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        version: FromPath[str],
        data: JSONBody[LifecycleChange],
        session: NamedDependency[Session],
        lifecycle: NamedDependency[Lifecycle],
    ) -> LifecycleOutcome:
        """Deprecate a published version; its consumers are told until when it is served."""
        return lifecycle.change_version(
            session, domain, name, version, VersionStatus.DEPRECATED, data.reason, data.served_until
        )

    @action(VERSION_PATH + "/retire", opt=WRITE)
    def retire_version(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        version: FromPath[str],
        data: JSONBody[LifecycleChange],
        session: NamedDependency[Session],
        lifecycle: NamedDependency[Lifecycle],
    ) -> LifecycleOutcome:
        """Retire a version; it is no longer served and its consumers are told."""
        return lifecycle.change_version(
            session, domain, name, version, VersionStatus.RETIRED, data.reason
        )
