"""Facility publisher pages: the facility's products with their versions' health and use, and
a products-file plan preview (`mesh apply --dry-run`, rendered).

A publisher holds its role per domain, so the product page declares `version:publish` and the
app's guard checks it in the page's `{domain}`; the index and the plan preview serve whoever
may publish in some domain, and list or plan only what the policy lets them touch.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.console.auth import ROOT, viewer
from catalog.console.call import ConsoleCall
from catalog.console.routes import OPEN, Req, _latest_published
from catalog.console.views import freshness, render
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden, InvalidParameter
from catalog.kernel.settings import Settings
from catalog.manifest.apply import Plan, apply_manifest
from catalog.manifest.loader import ManifestError, parse_manifest
from catalog.products import service as products
from catalog.products.models import DataProduct
from policies.enforcer import Caller
from policies.grants import facility

PUBLISH = {"permission": "version:publish"}
Upload = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]


def publishing_domains(session: Session, me: Caller) -> list[str]:
    """The domains `me` may publish in; Forbidden (recorded) when there are none."""
    names = [d.name for d in products.list_domains(session) if me.can(d.name, "version", "publish")]
    if not names:
        raise Forbidden("missing permission version:publish in any domain")
    return names


@dataclass(frozen=True)
class VersionHealth:
    """One version as its publisher watches it."""

    version: Any  # VersionRead
    quarantined: int
    findings: int
    inputs: int
    checks_failed: int


def _health(product: DataProduct) -> list[VersionHealth]:
    out = []
    for v in sorted(product.versions, key=lambda v: v.semver, reverse=True):
        counts = v.counts or {}
        checks = v.checks or []
        out.append(
            VersionHealth(
                version=products.version_read(v),
                quarantined=int(counts.get("quarantined", 0)),
                findings=int(counts.get("findings", 0)),
                inputs=int(counts.get("input_records", 0)),
                checks_failed=sum(1 for c in checks if not c.get("passed")),
            )
        )
    return out


class PublisherController(Controller):
    """`/console/publish`: the facility's products, one page per product."""

    path = f"{ROOT}/publish"

    @get("/", opt=OPEN, sync_to_thread=True)
    def index(self, call: NamedDependency[ConsoleCall]) -> Response[str]:
        """Every product of the domains the viewer publishes in, with its SLA state."""
        me = call.me
        domains = publishing_domains(call.session, me)
        now = call.clock.now()
        rows = []
        for domain in domains:
            found = products.search_products(
                call.session,
                products.ProductQuery(domain=domain),
                limit=call.settings.max_page_size,
            ).items
            for product in found:
                latest = _latest_published(product)
                rows.append(
                    {
                        "product": products.product_read(product),
                        "latest": latest.version if latest else None,
                        "versions": len(product.versions),
                        "freshness": freshness(latest, now),
                    }
                )
        return call.render("publish_index.html", domains=domains, rows=rows)

    @get("/{domain:str}/{name:str}", opt=PUBLISH, sync_to_thread=True)
    def product(
        self, domain: FromPath[str], name: FromPath[str], call: NamedDependency[ConsoleCall]
    ) -> Response[str]:
        """Versions with quarantine, findings and contract checks; SLA; consumers and grants;
        pending deprecations and whom they affect."""
        found = products.get_product(call.session, domain, name)
        now = call.clock.now()
        use = facility.product_use(
            call.session, found, actor=call.me, settings=call.settings, now=now
        )
        return call.render(
            "publish_product.html",
            product=products.product_detail(found),
            health=_health(found),
            freshness=freshness(_latest_published(found), now),
            use=use,
        )


class PlanController(Controller):
    """`/console/publish/plan`: paste or upload a products file, see the dry-run plan."""

    path = f"{ROOT}/publish/plan"

    @get("/", opt=OPEN, sync_to_thread=True)
    def form(self, call: NamedDependency[ConsoleCall]) -> Response[str]:
        """The form."""
        publishing_domains(call.session, call.me)
        return call.render(
            "publish_plan.html", text="", plan=None, errors=[], source="", foreign=set()
        )

    @post("/", opt=OPEN, sync_to_thread=True, status_code=200)
    def preview(
        self,
        request: Req,
        data: Upload,
        engine: NamedDependency[Engine],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[str]:
        """Validate like `mesh apply`, then apply in a transaction that is always rolled back."""
        me = viewer(request)
        source, text = _products_file(data, settings.max_manifest_bytes)
        plan: Plan | None = None
        errors: list[str] = []
        mine: list[str] = []
        with Session(engine) as session:
            try:
                mine = publishing_domains(session, me)
                manifest = parse_manifest(
                    text,
                    source=source,
                    max_nodes=settings.max_manifest_nodes,
                    max_depth=settings.max_manifest_depth,
                )
                plan = apply_manifest(session, manifest, actor=me, clock=clock)
            except ManifestError as exc:
                errors = exc.lines()
            finally:
                session.rollback()  # a preview: nothing is ever applied
        status = 422 if errors else 200
        return render(
            request,
            "publish_plan.html",
            status=status,
            text=text,
            plan=plan,
            errors=errors,
            source=source,
            # The plan is the operator's (`mesh apply` runs with the CLI's rights); objects of
            # other facilities are flagged, since only they or a platform admin may apply them.
            foreign={i.key for i in plan.items if i.key.split("/")[0] not in mine}
            if plan
            else set(),
        )


def _products_file(data: dict[str, Any], max_bytes: int) -> tuple[str, str]:
    """(name, text) of the uploaded file, else of the pasted text."""
    upload = data.get("upload")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = upload.file.read(max_bytes + 1)
        source = upload.filename.rsplit("/", 1)[-1][:100] or "products.yaml"
    else:
        pasted = data.get("manifest", "")
        raw = (pasted if isinstance(pasted, str) else "").encode()
        source = "products.yaml"
    if len(raw) > max_bytes:
        raise InvalidParameter(f"the products file is over the limit of {max_bytes} bytes")
    if not raw.strip():
        raise InvalidParameter("paste a products file or choose one to upload")
    try:
        return source, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidParameter(f"{source}:{line}: the file is not valid UTF-8") from None
