"""`mesh serve` judges its secrets by their estimated entropy, not their length.

The probe: `mesh serve` accepted 40 x `a` as MESH_SIGNING_KEY, `password1234password1234pass...`
as MESH_ADMIN_TOKEN, and an admin token equal to the signing key (whoever holds one holds both).
"""

import secrets

import pytest
from typer.testing import CliRunner

from catalog.cli import app
from catalog.kernel.settings import MIN_SECRET_BITS, Settings, estimated_bits

GOOD = secrets.token_urlsafe(48)
PROBED_KEY = "a" * 40
PROBED_TOKEN = "password1234password1234password1234pass"


def serve(tmp_path, **env: str):
    return CliRunner().invoke(
        app,
        ["serve", "--home", str(tmp_path / "home")],
        env={"MESH_DATABASE_URL": "", "MESH_SIGNING_KEY": "", "MESH_ADMIN_TOKEN": "", **env},
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MESH_SIGNING_KEY": PROBED_KEY}, "MESH_SIGNING_KEY is guessable"),
        ({"MESH_SIGNING_KEY": GOOD, "MESH_ADMIN_TOKEN": PROBED_TOKEN}, "MESH_ADMIN_TOKEN"),
        ({"MESH_SIGNING_KEY": GOOD, "MESH_ADMIN_TOKEN": GOOD}, "must differ from MESH_SIGNING"),
        ({"MESH_SIGNING_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCD"}, "MESH_SIGNING_KEY"),
        ({"MESH_SIGNING_KEY": "qwertyuiopasdfghjklzxcvbnm1234567890"}, "MESH_SIGNING_KEY"),
        ({"MESH_SIGNING_KEY": "Password123!" * 3 + "xyz"}, "MESH_SIGNING_KEY"),
    ],
)
def test_serve_refuses_guessable_and_shared_secrets(tmp_path, env, named):
    result = serve(tmp_path, **env)
    assert result.exit_code == 1, result.output
    assert "refusing to serve" in result.output and named in result.output
    for value in env.values():  # the error names the setting, never echoes the secret
        assert value == GOOD or value not in result.output


@pytest.mark.parametrize(
    "generate",
    [
        lambda: secrets.token_urlsafe(48),  # what the README, tests and bench use
        lambda: secrets.token_urlsafe(24),
        lambda: secrets.token_hex(16),  # 128 random bits, the smallest acceptable key
        lambda: secrets.token_hex(32),
    ],
)
def test_generated_keys_are_accepted(generate):
    for _ in range(500):
        key, token = generate(), generate()
        settings = Settings(signing_key=key, admin_token=token)
        assert settings.production_problems() == [], (key, estimated_bits(key))


def test_the_estimate_sees_through_repetition_runs_and_words():
    assert estimated_bits(PROBED_KEY) < 10
    assert estimated_bits(PROBED_TOKEN) < 40
    assert estimated_bits("0123456789" * 4) < 20
    assert estimated_bits(GOOD) > 2 * MIN_SECRET_BITS  # 64 random characters: ~380 bits
