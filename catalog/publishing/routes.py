"""Publishing API: publish a version from a server-side source, reconvert, list quarantine."""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlmodel import Session

from catalog.audit.models import Outcome
from catalog.audit.record import Actor, record_failure
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden
from catalog.kernel.pagination import page_size
from catalog.kernel.problems import READ_ERRORS, WRITE_ERRORS
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import VersionRead
from catalog.publishing import service
from catalog.publishing.models import (
    FindingPage,
    PublishRequest,
    QuarantinePage,
    ReconvertRequest,
)

VERSION_PATH = "/{domain:str}/{name:str}/versions/{version:str}"
PUBLISH = {"permission": "version:publish"}
# Documented as problem+json; 403 also covers a source outside the allowed roots, 429 too
# many failed authentications.
# The filters and page of the record listings (quarantine, findings).
VersionFilter = Annotated[str | None, QueryParameter(max_length=32)]
RuleFilter = Annotated[str | None, QueryParameter(max_length=64)]
Cursor = Annotated[str | None, QueryParameter(max_length=200)]
Limit = Annotated[int | None, QueryParameter(ge=1)]
PageT = TypeVar("PageT")


class PublishingController(Controller):
    """Landing data into a product version and inspecting what was quarantined."""

    path = "/api/v1/products"
    tags = ("publishing",)

    @post(
        VERSION_PATH + "/publish",
        sync_to_thread=True,
        status_code=200,
        opt=PUBLISH,
        responses=WRITE_ERRORS,
    )
    def publish(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        version: FromPath[str],
        data: JSONBody[PublishRequest],
        request: Request[Any, Any, Any],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> VersionRead:
        """Publish a draft version; it ends `published` or `quarantined` with its checks.

        The source must lie under the domain's publish roots (`MESH_PUBLISH_SOURCE_ROOTS`):
        anything else is refused (403) and the refusal audited.
        """
        try:
            source = service.check_source_allowed(settings, data.source, domain=domain)
        except Forbidden as exc:
            record_failure(
                request.app.state.audit,
                at=clock.now(),
                actor=actor,
                action="publish.refused",
                subject=("version", f"{domain}/{name}@{version}"),
                outcome=Outcome.DENIED,
                reason=exc.detail,
                details={"source": data.source[:1000]},
            )
            raise
        found = products.get_version(session, domain, name, version)
        published = service.publish_version(
            session,
            found,
            source,
            settings=settings,
            clock=clock,
            actor=actor,
            extracted_at=data.extracted_at,
        )
        return products.version_read(published)

    @post(
        VERSION_PATH + "/reconvert",
        sync_to_thread=True,
        status_code=201,
        opt=PUBLISH,
        responses=WRITE_ERRORS,
    )
    def reconvert(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        version: FromPath[str],
        data: JSONBody[ReconvertRequest],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        actor: NamedDependency[Actor],
        clock: NamedDependency[Clock],
    ) -> VersionRead:
        """Rebuild a version from its raw files as a new patch version."""
        found = products.get_version(session, domain, name, version)
        rebuilt = service.reconvert_version(
            session, found, view=data.view, settings=settings, clock=clock, actor=actor
        )
        return products.version_read(rebuilt)

    @get(
        "/{domain:str}/{name:str}/quarantine",
        sync_to_thread=True,
        opt={"permission": "quarantine:read"},
        responses=READ_ERRORS,
    )
    def quarantine(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        version: VersionFilter = None,
        rule: RuleFilter = None,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> QuarantinePage:
        """Quarantined input records with counts by reason."""
        return _records_page(
            service.list_quarantine, session, settings, domain, name, version, rule, cursor, limit
        )

    @get(
        "/{domain:str}/{name:str}/findings",
        sync_to_thread=True,
        opt={"permission": "quarantine:read"},
        responses=READ_ERRORS,
    )
    def findings(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        session: NamedDependency[Session],
        settings: NamedDependency[Settings],
        version: VersionFilter = None,
        rule: RuleFilter = None,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> FindingPage:
        """Values that did not conform to their FHIR type (made null, rows kept), by rule."""
        return _records_page(
            service.list_findings, session, settings, domain, name, version, rule, cursor, limit
        )


def _records_page(
    lister: Callable[..., PageT],
    session: Session,
    settings: Settings,
    domain: str,
    name: str,
    version: str | None,
    rule: str | None,
    cursor: str | None,
    limit: int | None,
) -> PageT:
    """One page of a product's records from `lister` (`service.list_quarantine` or
    `service.list_findings`), its size bounded by the settings."""
    size = page_size(limit, default=settings.default_page_size, maximum=settings.max_page_size)
    product = products.get_product(session, domain, name)
    return lister(session, product, version=version, rule=rule, limit=size, cursor=cursor)
