"""A third-party DPoP client against the real services: panva's oauth4webapi (npm), a strict
implementation of RFC 9449, run by Node from tests/thirdparty/oauth4webapi/ (installed here
with `npm ci` from its package-lock.json). Skipped only where there is no `node`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from shared.service.settings import PROJECT_ROOT
from tests.support import SERVICE_APP, start_auth_server, start_resource_server

CLIENT_DIR = PROJECT_ROOT / "tests" / "thirdparty" / "oauth4webapi"
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def oauth4webapi() -> str:
    if NODE is None:
        pytest.skip("node is not installed")
    if not (CLIENT_DIR / "node_modules" / "oauth4webapi").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node without npm: cannot install oauth4webapi"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, check=True, timeout=300
        )
    return str(CLIENT_DIR / "dpop_client.mjs")


@pytest.mark.parametrize("nonces", [False, True], ids=["no-nonce", "nonce-required"])
def test_oauth4webapi_gets_dpop_tokens_and_calls_the_api(
    oauth4webapi, serve, make_database_url, nonces
):
    auth = start_auth_server(serve, make_database_url("auth"), dpop_nonce_required=nonces)
    notes_api = start_resource_server(serve, make_database_url("notes"), auth)
    env = {
        **os.environ,
        "ISSUER": auth.url,
        "CLIENT_ID": SERVICE_APP[0],
        "CLIENT_SECRET": SERVICE_APP[1],
        "API": notes_api.url,
    }
    run = subprocess.run([NODE, oauth4webapi], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["algs"] == ["ES256", "EdDSA", "Ed25519", "RS256"]
    for alg, result in seen["runs"].items():
        assert result["token_type"].lower() == "dpop", alg
        assert result["api_status"] == 200 and result["api_body"] == {"notes": []}, alg
        # the bound token is useless without the key
        assert result["bearer_status"] == 401, alg
        assert result["bearer_challenge"].startswith("DPoP "), alg
