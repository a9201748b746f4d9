"""docker-compose.yml as data, for tests that check it or run what it runs without Docker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shared.service.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"

# ${VAR}, ${VAR:-default}, ${VAR-default}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose's interpolation, with `variables` standing for the shell (none by default, so
    the file's own defaults apply)."""
    variables = variables or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group("name")) or match.group("default") or ""

    return _VARIABLE.sub(replace, value)


def env_files(service: dict[str, Any]) -> list[Path]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [PROJECT_ROOT / (f["path"] if isinstance(f, dict) else f) for f in files]


def read_env_file(path: Path) -> list[tuple[str, str, list[str]]]:
    """(NAME, value, the comment lines right above it) for every assignment in an env file."""
    entries = []
    comments: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comments = []
        elif stripped.startswith("#"):
            comments.append(stripped)
        else:
            name, _, value = stripped.partition("=")
            entries.append((name.strip(), value.strip(), comments))
            comments = []
    return entries


def service_environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    """What a container of service `name` gets: its env files in order, then `environment:`
    (which wins), interpolated with the compose file's defaults."""
    service = compose["services"][name]
    env: dict[str, str] = {}
    for path in env_files(service):
        env.update({key: value for key, value, _ in read_env_file(path)})
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({key: interpolate(str(value)) for key, value in environment.items()})
    return env


def service_command(compose: dict[str, Any], name: str) -> list[str]:
    command = compose["services"][name]["command"]
    command = command if isinstance(command, list) else command.split()
    return [interpolate(part) for part in command]
