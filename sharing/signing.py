"""HMAC signatures: file URLs, page tokens and console sessions share one key.

The key is `MESH_SIGNING_KEY`; without one (the demo), a random key per process, so URLs and
page tokens are valid only within the process that made them.
"""

import base64
import hashlib
import hmac
import json
import secrets

from catalog.kernel.errors import InvalidParameter
from catalog.kernel.settings import Settings


def signing_key(settings: Settings) -> bytes:
    """The HMAC key (random per process when none is configured)."""
    if settings.signing_key is not None:
        return settings.signing_key.get_secret_value().encode()
    return _PROCESS_KEY


# Without a configured key, URLs and page tokens are valid only within this process.
_PROCESS_KEY = secrets.token_bytes(32)


def mac(key: bytes, message: str) -> str:
    """Hex HMAC-SHA256."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def page_token(key: bytes, scope: str, offset: int) -> str:
    """An opaque, tamper-proof page token bound to the listing it came from."""
    payload = base64.urlsafe_b64encode(json.dumps([scope, offset]).encode()).decode()
    return f"{payload}.{mac(key, payload)}"


def page_offset(key: bytes, scope: str, token: str | None) -> int:
    """The offset a page token stands for, or InvalidParameter."""
    if not token:
        return 0
    payload, _, signature = token.partition(".")
    if not hmac.compare_digest(signature.encode(), mac(key, payload).encode()):
        raise InvalidParameter("invalid pageToken")
    try:
        token_scope, offset = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        raise InvalidParameter("invalid pageToken") from None
    if token_scope != scope or not isinstance(offset, int) or offset < 0:
        raise InvalidParameter("invalid pageToken")
    return offset
