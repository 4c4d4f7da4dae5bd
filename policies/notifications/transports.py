"""Ways out of the process: a signed JSON POST (urllib) and a plain-text e-mail (smtplib).

Each send raises `DeliveryError` when it does not succeed, `permanent` when retrying cannot help;
the outbox (`delivery.py`) decides what happens next. Neither ever runs inside a transaction.
"""

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

from catalog.kernel.settings import Settings, is_loopback, webhook_url_problem
from policies.notifications import audiences
from policies.notifications.models import Channel

SIGNATURE_HEADER = "X-Mesh-Signature"
DELIVERY_HEADER = "X-Mesh-Delivery"
EVENT_HEADER = "X-Mesh-Event"


class DeliveryError(Exception):
    """A send that did not succeed; `permanent` when retrying cannot help (a 4xx, a 5yz reply)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def signature(secret: str, body: bytes) -> str:
    """The `X-Mesh-Signature` value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Outgoing:
    """A leased outbox row with everything its send needs (no session)."""

    delivery_id: int
    attempt: int
    channel: Channel
    target: str
    audience: str
    payload: dict[str, Any]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answer that redirects is a failure: never re-POST the body somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def send_webhook(settings: Settings, message: Outgoing) -> None:
    """POST the payload as JSON, signed; a 2xx answer is success."""
    secret = settings.notify_webhook_secret
    problem = webhook_url_problem(message.target)
    if problem is not None or secret is None:
        raise DeliveryError(problem or "no webhook secret configured", permanent=True)
    body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
    request = urllib.request.Request(  # noqa: S310 (http(s) only: webhook_url_problem)
        message.target,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "fhir-mesh-notifications",
            SIGNATURE_HEADER: signature(secret.get_secret_value(), body),
            DELIVERY_HEADER: str(message.delivery_id),
            EVENT_HEADER: str(message.payload["kind"]),
        },
    )
    handlers: list[Any] = [_NoRedirects()]
    if is_loopback(urlsplit(message.target).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=settings.notify_webhook_timeout_seconds) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        retry = exc.code in (408, 425, 429) or exc.code >= 500
        raise DeliveryError(f"webhook answered {exc.code}", permanent=not retry) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered {status}")


def email_text(message: Outgoing) -> str:
    """The plain-text e-mail: title, body, the audience's console link, why it came."""
    payload = message.payload
    link = payload["links"].get(message.audience, "")
    why = {
        audiences.ADMIN: "you are a platform admin",
        audiences.OWNER: "you own the product",
        audiences.REQUESTER: "your organisation filed the request",
        audiences.GRANTEE: "your organisation holds the grant",
    }.get(message.audience, "you are concerned")
    return (
        f"{payload['body']}\n\nOpen: {link}\n\n"
        f"FHIR Mesh notification {payload['notification']} ({payload['kind']}), sent to this "
        f"address because {why}. Details are in the console; this message carries none.\n"
    )


def send_email(settings: Settings, message: Outgoing) -> None:
    """Send one plain-text e-mail through the configured SMTP server (smtplib)."""
    host = settings.notify_smtp_host
    if not host:
        raise DeliveryError("no SMTP server configured", permanent=True)
    email = EmailMessage()
    email["From"] = settings.notify_smtp_from
    email["To"] = message.target
    email["Subject"] = f"[FHIR Mesh] {message.payload['title']}"
    email["Date"] = format_datetime(datetime.fromisoformat(message.payload["created_at"]))
    email["Message-ID"] = make_msgid(idstring=f"mesh-{message.delivery_id}")
    email["X-Mesh-Delivery"] = str(message.delivery_id)
    email.set_content(email_text(message))
    try:
        with smtplib.SMTP(
            host, settings.notify_smtp_port, timeout=settings.notify_smtp_timeout_seconds
        ) as smtp:
            if settings.notify_smtp_starttls:
                ca_file = settings.notify_smtp_ca_file
                smtp.starttls(
                    context=ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                )
            if settings.notify_smtp_username:
                password = settings.notify_smtp_password
                smtp.login(
                    settings.notify_smtp_username, password.get_secret_value() if password else ""
                )
            smtp.send_message(email)
    except smtplib.SMTPResponseException as exc:
        # 5yz is a permanent refusal (RFC 5321 4.2.1); 4yz a transient one.
        raise DeliveryError(
            f"SMTP server answered {exc.smtp_code}", permanent=exc.smtp_code >= 500
        ) from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("SMTP server refused the recipient", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from None


def send(settings: Settings, message: Outgoing) -> None:
    """Send one leased row over its channel; raises DeliveryError."""
    if message.channel == Channel.WEBHOOK:
        send_webhook(settings, message)
    else:
        send_email(settings, message)
