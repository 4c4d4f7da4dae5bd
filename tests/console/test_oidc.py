"""Console sign-in through an OIDC issuer: a small provider runs on a loopback port in the test
(RSA key generated here), and the console runs the authorization code flow with PKCE against it."""

import base64
import hashlib
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from catalog.app import create_app
from catalog.audit.models import AuditEvent
from catalog.console.session import COOKIE

CLIENT_ID, CLIENT_SECRET = "mesh-console", "console-secret"


class Provider:
    """An OIDC provider: discovery, JWKS, and a token endpoint that checks the PKCE verifier."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def jwks(self) -> dict:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]}

    def authorize(self, location: str, claims: dict, *, signing_key=None) -> dict:
        """The user signs in at the provider: a code for the ID token `claims` (plus the
        request's nonce unless `claims` sets one). Returns the query the provider redirects with."""
        query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
        code = f"code-{len(self.codes)}"
        self.codes[code] = {
            "claims": {"nonce": query["nonce"]} | claims,
            "challenge": query["code_challenge"],
            "method": query["code_challenge_method"],
            "redirect_uri": query["redirect_uri"],
            "client_id": query["client_id"],
            "signing_key": signing_key or self.key,
        }
        return {"code": code, "state": query["state"]}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    return self._json(
                        200,
                        {
                            "issuer": provider.issuer,
                            "authorization_endpoint": f"{provider.issuer}/authorize",
                            "token_endpoint": f"{provider.issuer}/token",
                            "jwks_uri": f"{provider.issuer}/jwks",
                            "code_challenge_methods_supported": ["S256"],
                        },
                    )
                if self.path == "/jwks":
                    return self._json(200, provider.jwks())
                return self._json(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.token_requests.append(form)
                expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("authorization") != f"Basic {expected}":
                    return self._json(401, {"error": "invalid_client"})
                grant = provider.codes.pop(form.get("code", ""), None)
                if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                    return self._json(400, {"error": "invalid_grant"})
                verifier = form.get("code_verifier", "")
                digest = hashlib.sha256(verifier.encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                if grant["method"] != "S256" or challenge != grant["challenge"]:
                    return self._json(400, {"error": "invalid_grant", "detail": "PKCE"})
                token = jwt.encode(
                    grant["claims"], grant["signing_key"], algorithm="RS256", headers={"kid": "k1"}
                )
                return self._json(200, {"id_token": token, "token_type": "Bearer"})

        return Handler


@pytest.fixture
def provider():
    p = Provider()
    p.thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture
def console(settings, engine, clock, estate, provider):
    configured = settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            "oidc_principal_claim": "preferred_username",
        }
    )
    with TestClient(create_app(configured, engine=engine, clock=clock)) as client:
        yield client


def _claims(provider, clock, **overrides):
    now = int(clock.now().timestamp())
    return {
        "iss": provider.issuer,
        "aud": CLIENT_ID,
        "sub": "user-123",
        "preferred_username": "researcher",
        "iat": now,
        "exp": now + 300,
    } | overrides


def _sign_in(console, provider, claims, **authorize):
    start = console.get("/console/sign-in/oidc?next=/console/my/grants", follow_redirects=False)
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    assert location.startswith(f"{provider.issuer}/authorize?")
    query = parse_qs(urlparse(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    pending = [v for k, v in start.headers.multi_items() if k == "set-cookie"]
    assert any("mesh_console_oidc=" in v and "SameSite=Lax" in v for v in pending)
    back = provider.authorize(location, claims, **authorize)
    return console.get(f"/console/sign-in/oidc/callback?{urlencode(back)}", follow_redirects=False)


def test_sign_in_with_the_issuer_maps_the_claim_to_the_principal(console, provider, clock):
    page = console.get("/console/sign-in")
    assert "Sign in with your organisation's account" in page.text
    done = _sign_in(console, provider, _claims(provider, clock))
    assert done.status_code == 200, done.text
    assert 'http-equiv="refresh" content="0;url=/console/my/grants"' in done.text
    (form,) = provider.token_requests
    assert form["grant_type"] == "authorization_code" and len(form["code_verifier"]) >= 43
    home = console.get("/console/")
    assert "Signed in as <strong>researcher</strong> (research-lab)" in home.text
    assert console.get("/console/my/grants").status_code == 200
    assert console.get("/console/review").status_code == 403  # the principal's own rights
    csrf = console.get("/console/").text.split('name="_csrf" value="')[1].split('"')[0]
    copied = console.cookies.get(COOKIE)
    assert console.post("/console/sign-out", data={"_csrf": csrf}).status_code in (200, 303)
    console.cookies.set(COOKIE, copied, path="/console")
    assert console.get("/console/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"preferred_username": "nobody-here"}, "is not an enabled principal"),
        ({"nonce": "another-sign-in"}, "nonce does not match"),
        ({"aud": "another-client"}, "InvalidAudienceError"),
        ({"iss": "http://evil.example"}, "InvalidIssuerError"),
        ({"exp": 1}, "has expired"),
    ],
)
def test_refused_id_tokens_are_audited(console, provider, clock, engine, overrides, why):
    r = _sign_in(console, provider, _claims(provider, clock) | overrides)
    assert r.status_code == 401 and "Sign-in with your identity provider was refused" in r.text
    assert why in r.text
    assert console.get("/console/", follow_redirects=False).status_code == 303
    with Session(engine) as s:
        failed = s.exec(select(AuditEvent).where(AuditEvent.action == "auth.failed")).all()
    assert len(failed) == 1 and failed[0].reason.startswith("console OIDC sign-in: ")


def test_a_token_signed_by_another_key_is_refused(console, provider, clock):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = _sign_in(console, provider, _claims(provider, clock), signing_key=other)
    assert r.status_code == 401 and "InvalidSignatureError" in r.text


def test_state_must_match_and_the_pending_sign_in_expires(console, provider, clock):
    start = console.get("/console/sign-in/oidc", follow_redirects=False)
    back = provider.authorize(start.headers["location"], _claims(provider, clock))
    forged = console.get(
        f"/console/sign-in/oidc/callback?code={back['code']}&state=forged", follow_redirects=False
    )
    assert forged.status_code == 401 and "state does not match" in forged.text
    start = console.get("/console/sign-in/oidc", follow_redirects=False)
    back = provider.authorize(start.headers["location"], _claims(provider, clock))
    clock.advance(seconds=timedelta(minutes=11).total_seconds())
    late = console.get(f"/console/sign-in/oidc/callback?{urlencode(back)}", follow_redirects=False)
    assert late.status_code == 401 and "expired" in late.text
    assert provider.token_requests == []  # no code was redeemed for either


def test_without_configuration_there_is_no_oidc_sign_in(people):
    p = people()
    assert "organisation's account" not in p.get("/console/sign-in").text
    assert p.get("/console/sign-in/oidc").status_code == 404


def test_an_unreachable_issuer_is_said_on_the_sign_in_page(console, provider):
    provider.server.shutdown()
    provider.server.server_close()
    r = console.get("/console/sign-in/oidc", follow_redirects=False)
    assert r.status_code == 503 and "could not be reached" in r.text
    assert "API token" in r.text
