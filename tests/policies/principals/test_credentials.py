"""Authentication: missing and bad tokens, token expiry, revocation and disabled principals, OIDC JWTs."""

import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient

from catalog.app import create_app
from tests.problems import assert_problem


def test_anonymous_and_bad_tokens_get_401(estate, clock):
    anonymous = estate.client.get("/api/v1/products")
    assert_problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["type"].endswith("/unauthenticated")
    for token in (
        "nonsense",
        "mesh_",
        "mesh_abc_def",
        estate.tokens["researcher"][:-1] + "x",
        estate.tokens["researcher"][:20],
    ):
        r = estate.client.get("/api/v1/products", headers={"Authorization": f"Bearer {token}"})
        assert_problem(r, 401)
        assert r.json()["detail"] == "missing, invalid, expired or revoked credentials"
    assert estate.client.get("/healthz").status_code == 200
    assert estate.client.get("/schema/openapi.json").status_code == 200


def test_token_expiry_revocation_and_disabling(estate, clock):
    issued = estate.call(
        "researcher", "POST", "/api/v1/principals/researcher/tokens", json={"days": 1}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert estate.client.get("/api/v1/products", headers=headers).status_code == 200
    clock.advance(days=1, seconds=1)
    assert_problem(estate.client.get("/api/v1/products", headers=headers), 401)
    other = estate.call(
        "researcher", "POST", "/api/v1/principals/researcher/tokens", json={}
    ).json()
    r = estate.call("researcher", "POST", f"/api/v1/principals/tokens/{other['id']}/revoke")
    assert r.status_code == 200
    assert (
        estate.client.get(
            "/api/v1/products", headers={"Authorization": f"Bearer {other['token']}"}
        ).status_code
        == 401
    )
    assert (
        estate.call("quality", "POST", "/api/v1/principals/researcher/tokens", json={}).status_code
        == 403
    )
    d = estate.call(
        "admin1", "POST", "/api/v1/principals/researcher/disable", json={"reason": "left the lab"}
    )
    assert d.status_code == 200 and d.json()["disabled"] is True
    assert_problem(estate.call("researcher", "GET", "/api/v1/products"), 401)


def test_oidc_jwt(settings, engine, clock, estate):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk |= {"kid": "test-key", "use": "sig", "alg": "RS256"}
    oidc = settings.model_copy(
        update={
            "oidc_issuer": "https://idp.example.org",
            "oidc_audience": "fhir-mesh",
            "oidc_jwks": json.dumps({"keys": [jwk]}),
        }
    )

    def token(sub="researcher", **claims):
        now = int(time.time())
        payload = {
            "iss": "https://idp.example.org",
            "aud": "fhir-mesh",
            "sub": sub,
            "iat": now,
            "exp": now + 300,
        } | claims
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "test-key"})

    with TestClient(create_app(oidc, engine=engine, clock=clock)) as c:

        def get(t):
            return c.get("/api/v1/grants", headers={"Authorization": f"Bearer {t}"}).status_code

        assert get(token()) == 200
        assert get(token(sub="nobody")) == 401
        assert get(token(aud="other")) == 401
        assert get(token(iss="https://evil.example.org")) == 401
        assert get(token(exp=int(time.time()) - 3600)) == 401
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {
                "iss": "https://idp.example.org",
                "aud": "fhir-mesh",
                "sub": "admin1",
                "exp": int(time.time()) + 60,
            },
            other_key,
            algorithm="RS256",
            headers={"kid": "test-key"},
        )
        assert get(forged) == 401
