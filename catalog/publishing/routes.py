"""Publishing API: publish a version from a server-side source, reconvert, list quarantine."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlmodel import Session

from catalog.audit.models import Outcome
from catalog.audit.record import Actor, record_failure
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden
from catalog.kernel.pagination import PageRequest
from catalog.kernel.problems import READ_ERRORS, WRITE_ERRORS
from catalog.kernel.routing import action
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

PRODUCT_PATH = "/{domain:str}/{name:str}"
VERSION_PATH = PRODUCT_PATH + "/versions/{version:str}"
PUBLISH = {"permission": "version:publish"}
RECORDS = {"permission": "quarantine:read"}
PageT = TypeVar("PageT")


@dataclass(frozen=True, slots=True)
class RecordsQuery:
    """The `records` dependency of the record listings (quarantine, findings): whose records,
    the version and rule filters, and the page."""

    domain: FromPath[str]
    name: FromPath[str]
    page: NamedDependency[PageRequest]
    version: Annotated[str | None, QueryParameter(max_length=32)] = None
    rule: Annotated[str | None, QueryParameter(max_length=64)] = None

    def listed(self, session: Session, lister: Callable[..., PageT]) -> PageT:
        """The page `lister` (`service.list_quarantine` or `service.list_findings`) answers."""
        product = products.get_product(session, self.domain, self.name)
        return lister(
            session,
            product,
            version=self.version,
            rule=self.rule,
            limit=self.page.size,
            cursor=self.page.cursor,
        )


class PublishingController(Controller):
    """Landing data into a product version and inspecting what was quarantined."""

    path = "/api/v1/products"
    tags = ("publishing",)
    dependencies = {  # noqa: RUF012 (litestar reads it from the class)
        "records": Provide(RecordsQuery, sync_to_thread=False)
    }

    @action(VERSION_PATH + "/publish", opt=PUBLISH)
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

    @post(VERSION_PATH + "/reconvert", sync_to_thread=True, opt=PUBLISH, responses=WRITE_ERRORS)
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

    @get(PRODUCT_PATH + "/quarantine", sync_to_thread=True, opt=RECORDS, responses=READ_ERRORS)
    def quarantine(
        self, session: NamedDependency[Session], records: NamedDependency[RecordsQuery]
    ) -> QuarantinePage:
        """Quarantined input records with counts by reason."""
        return records.listed(session, service.list_quarantine)

    @get(PRODUCT_PATH + "/findings", sync_to_thread=True, opt=RECORDS, responses=READ_ERRORS)
    def findings(
        self, session: NamedDependency[Session], records: NamedDependency[RecordsQuery]
    ) -> FindingPage:
        """Values that did not conform to their FHIR type (made null, rows kept), by rule."""
        return records.listed(session, service.list_findings)
