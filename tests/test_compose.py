"""The container deployment, checked without Docker: docker-compose.yml, its env files, the
nginx configuration and the Dockerfile (tests/end_to_end/test_stack.py runs what they run)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import delete

from auth_server.db import db as auth_db
from auth_server.models import SigningKey
from auth_server.settings import AuthSettings
from examples.demo_web.settings import DemoWebSettings
from resource_server.settings import ResourceSettings
from shared.service import demo_seed
from shared.service.settings import PROJECT_ROOT, ServiceSettings
from tests.compose import (
    DOCKERFILE,
    env_files,
    load_compose,
    read_env_file,
    service_command,
    service_environment,
)
from tests.processes import free_port
from tests.support import start_auth_server, start_resource_server

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
AUTH_NAMES = {name.upper() for name in AuthSettings.model_fields}
RESOURCE_NAMES = {name.upper() for name in ResourceSettings.model_fields}
KNOWN = {
    "auth-server": AUTH_NAMES,
    "resource-server": RESOURCE_NAMES,
    # migrate runs `flask --app auth_server ...` and `flask --app resource_server ...`
    "migrate": AUTH_NAMES | RESOURCE_NAMES,
    # gunicorn.conf.py reads the services' common settings (METRICS_BIND) in every container
    "demo-web": {name.upper() for name in DemoWebSettings.model_fields}
    | {name.upper() for name in ServiceSettings.model_fields},
}
# Read by the image or gunicorn, not by the settings modules: the Dockerfile's SERVICE, and
# gunicorn.conf.py's variables.
INFRA = re.compile(r"^(SERVICE|PROMETHEUS_MULTIPROC_DIR|GUNICORN_[A-Z_]+)$")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|ENCRYPTION_KEY|TOKEN")


def _healthcheck(name: str, port: int) -> int:
    """Run a service's compose healthcheck (CMD form) here, against `port` instead of the
    image's 8000; its exit status."""
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    command = [sys.executable if arg == "python" else arg for arg in test[1:]]
    command = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in command]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


@pytest.mark.live  # the healthcheck runs in a child interpreter
def test_service_healthchecks_pass_only_while_the_service_is_ready(serve, make_database_url):
    """The command compose runs: 0 against a ready service, non-zero against one whose
    /readyz says it cannot serve (no signing key) or that is not listening."""
    auth = start_auth_server(serve, make_database_url("auth"))
    notes = start_resource_server(serve, make_database_url("notes"), auth)
    assert _healthcheck("auth-server", auth.server.port) == 0
    assert _healthcheck("resource-server", int(notes.url.rsplit(":", 1)[1])) == 0
    with auth.app.app_context():
        auth_db.session.execute(delete(SigningKey))
        auth_db.session.commit()
    auth.app.extensions["tessera"].keyring.invalidate()
    assert _healthcheck("auth-server", auth.server.port) != 0
    assert _healthcheck("resource-server", free_port()) != 0


def _depends(name: str) -> dict[str, str]:
    return {dep: spec["condition"] for dep, spec in SERVICES[name]["depends_on"].items()}


def test_start_order_waits_for_health_and_for_the_migrations():
    assert _depends("migrate") == {"postgres": "service_healthy"}
    assert _depends("auth-server") == {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert _depends("resource-server")["migrate"] == "service_completed_successfully"
    assert _depends("resource-server")["postgres"] == "service_healthy"
    assert set(_depends("proxy").values()) == {"service_healthy"}
    assert set(_depends("proxy")) == {"auth-server", "resource-server"}


def test_only_the_proxy_publishes_ports():
    """resource-server scales (--scale resource-server=3): no host port, no container_name."""
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"proxy"}
    assert "container_name" not in SERVICES["resource-server"]
    ports = [port.split(":")[-2:] for port in SERVICES["proxy"]["ports"]]
    assert ports == [["8000", "8000"], ["8001", "8001"], ["8002", "8002"]]


def test_migrate_upgrades_both_databases_then_seeds_only_in_demo_mode():
    script = service_command(COMPOSE, "migrate")[-1]
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    upgrade_auth = lines.index("flask --app auth_server db upgrade")
    upgrade_rs = lines.index("flask --app resource_server db upgrade")
    demo = next(i for i, line in enumerate(lines) if "demo setup" in line)
    assert lines[0] == "set -e"
    assert upgrade_auth < demo and upgrade_rs < demo
    assert "TESSERA_DEMO" in lines[demo - 1]
    assert SERVICES["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", ["auth-server", "resource-server", "migrate", "demo-web"])
def test_every_variable_a_service_gets_is_one_it_reads(name):
    """A misspelt or stale name would be silently ignored by the settings (extra="ignore")."""
    env = service_environment(COMPOSE, name)
    unknown = {var for var in env if var not in KNOWN[name] and not INFRA.match(var)}
    assert unknown == set()


def test_each_service_gets_only_its_own_database_url():
    assert "RESOURCE_DATABASE_URL" not in service_environment(COMPOSE, "auth-server")
    assert "AUTH_DATABASE_URL" not in service_environment(COMPOSE, "resource-server")


def test_services_are_wired_to_each_other_and_to_the_public_issuer():
    auth = service_environment(COMPOSE, "auth-server")
    resource = service_environment(COMPOSE, "resource-server")
    assert auth["AUTH_ISSUER"] == "http://localhost:8000"
    assert resource["RESOURCE_EXPECTED_ISSUER"] == auth["AUTH_ISSUER"]
    assert resource["AUTH_SERVER_URL"] == "http://auth-server:8000"
    assert auth["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379")
    assert "@postgres:5432/tessera_auth" in auth["AUTH_DATABASE_URL"]
    assert "@postgres:5432/tessera_notes" in resource["RESOURCE_DATABASE_URL"]
    assert resource["RESOURCE_CLIENT_ID"] and resource["RESOURCE_CLIENT_SECRET"]
    assert auth["AUTH_KEY_ENCRYPTION_KEY"]
    # One proxy in front: the client IP (per-IP login throttling) is the one it saw.
    assert auth["TRUSTED_PROXIES"] == resource["TRUSTED_PROXIES"] == "1"
    # The settings themselves accept these values.
    AuthSettings(**{k.lower(): v for k, v in auth.items() if k in AUTH_NAMES})
    ResourceSettings(**{k.lower(): v for k, v in resource.items() if k in RESOURCE_NAMES})


def _env_file_entries():
    paths = {path for service in SERVICES.values() for path in env_files(service)}
    return [(path, *entry) for path in sorted(paths) for entry in read_env_file(path)]


def test_every_secret_in_the_env_files_is_marked_demo_only():
    checked = 0
    for path, name, value, comments in _env_file_entries():
        is_secret = SECRET_NAME.search(name) or re.search(r"://[^/@:]+:[^/@]+@", value)
        if is_secret:
            checked += 1
            assert any("DEMO ONLY" in line for line in comments), f"{path.name}: {name}"
    assert checked >= 6  # 2 database URLs, key, client secret, 3 postgres passwords


def test_database_passwords_agree_between_postgres_and_the_services():
    postgres = {name: value for _, name, value, _ in _env_file_entries()}
    auth = service_environment(COMPOSE, "auth-server")["AUTH_DATABASE_URL"]
    notes = service_environment(COMPOSE, "resource-server")["RESOURCE_DATABASE_URL"]
    assert f":{postgres['TESSERA_AUTH_DB_PASSWORD']}@" in auth
    assert f":{postgres['TESSERA_NOTES_DB_PASSWORD']}@" in notes


def test_postgres_init_script_creates_both_databases():
    (mount,) = [v for v in SERVICES["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    init_dir = PROJECT_ROOT / mount.split(":")[0]
    script = "".join(p.read_text() for p in sorted(init_dir.iterdir()))
    for database in ("tessera_auth", "tessera_notes"):
        assert f"CREATE DATABASE {database} OWNER {database}" in script


def test_proxy_finds_scaled_replicas_through_docker_dns():
    mount = SERVICES["proxy"]["volumes"][0].split(":")
    conf = (PROJECT_ROOT / mount[0]).read_text()
    assert mount[1] == "/etc/nginx/nginx.conf"
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", conf)
    # A variable in proxy_pass: resolved per request, not once at start-up.
    assert "set $auth_server http://auth-server:8000;" in conf
    assert "set $resource_server http://resource-server:8000;" in conf
    assert "proxy_pass $auth_server;" in conf and "proxy_pass $resource_server;" in conf
    assert "proxy_set_header X-Forwarded-For" in conf
    assert "proxy_set_header X-Request-ID" in conf
    assert re.search(r"listen 8000;.*listen 8001;.*listen 8002;", conf, re.S)
    assert "set $demo_web http://demo-web:8000;" in conf and "proxy_pass $demo_web;" in conf


def test_metrics_listen_apart_from_the_service_port_and_are_never_published_or_proxied():
    final = _final_stage(DOCKERFILE.read_text())
    service_port = re.search(r"GUNICORN_BIND=\S+:(\d+)", final).group(1)
    metrics_port = re.search(r"METRICS_BIND=\S+:(\d+)", final).group(1)
    assert metrics_port != service_port
    for name in ("auth-server", "resource-server"):
        assert "METRICS_BIND" not in service_environment(COMPOSE, name)  # the image's, as is
    published = [port for service in SERVICES.values() for port in service.get("ports", [])]
    assert not [port for port in published if port.split(":")[-1] == metrics_port]
    conf = (PROJECT_ROOT / "deploy" / "nginx.conf").read_text()
    directives = [line.split("#")[0] for line in conf.splitlines()]
    assert not [line for line in directives if f":{metrics_port}" in line]
    # and each public server answers 404 itself rather than forwarding /metrics
    servers = re.split(r"\n    server \{", conf)[1:]
    assert len(servers) == 3
    assert all(re.search(r"location = /metrics \{\s*return 404;", block) for block in servers)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here")
def test_nginx_accepts_the_proxy_configuration(tmp_path):
    conf = (PROJECT_ROOT / "deploy" / "nginx.conf").read_text()
    # The image has an `nginx` user; a local nginx may not.
    (tmp_path / "nginx.conf").write_text(conf.replace("user nginx;", ""))
    result = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _final_stage(dockerfile: str) -> str:
    return re.split(r"(?im)^FROM\s", dockerfile)[-1]


def test_dockerfile_builds_apart_and_runs_slim_and_unprivileged():
    dockerfile = DOCKERFILE.read_text()
    assert len(re.findall(r"(?im)^FROM\s", dockerfile)) >= 2
    assert re.search(r"(?im)^FROM\s.*\sAS\s+builder", dockerfile)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    final = _final_stage(dockerfile)
    assert final.startswith("${PYTHON_IMAGE}")
    users = re.findall(r"(?im)^USER\s+(\S+)", final)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not re.search(r"gcc|build-essential|apt-get install", final)
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "PYTHONUNBUFFERED=1" in final
    cmd = re.search(r"(?im)^CMD\s+(.*)$", final).group(1)
    assert "gunicorn -c /app/gunicorn.conf.py" in cmd and "${SERVICE}.wsgi:app" in cmd


def test_dockerignore_keeps_local_state_out_of_the_image():
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    # An allow-list: everything is ignored, then only what the Dockerfile copies comes back.
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "gunicorn.conf.py",
        "auth_server",
        "resource_server",
        "shared",
        "examples",
    }
    copied = re.findall(r"(?m)^COPY\s+(?!--from)(.+)\s+\S+$", DOCKERFILE.read_text())
    assert {src for line in copied for src in line.split()} <= allowed


def test_the_demo_web_app_signs_in_at_the_public_issuer_and_calls_inside_the_network():
    demo = service_environment(COMPOSE, "demo-web")
    auth = service_environment(COMPOSE, "auth-server")
    assert demo["SERVICE"] == "examples.demo_web"
    assert demo["DEMO_WEB_ISSUER"] == auth["AUTH_ISSUER"]
    assert demo["DEMO_WEB_AUTH_SERVER_URL"] == "http://auth-server:8000"
    assert demo["DEMO_WEB_NOTES_URL"] == "http://resource-server:8000/api"
    settings = DemoWebSettings(**{k.lower(): v for k, v in demo.items() if k in KNOWN["demo-web"]})
    # The redirect URI and secret the demo seed registers for it.
    (seeded,) = [c for c in demo_seed.CLIENTS if c["client_id"] == settings.demo_web_client_id]
    assert seeded["redirect_uris"] == [settings.redirect_uri]
    assert seeded["secret"] == settings.demo_web_client_secret
