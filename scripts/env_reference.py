"""Print the environment-variable reference of both services as Markdown tables.

`python scripts/env_reference.py` regenerates the tables of docs/settings.md (between its
env-reference markers); tests/test_project.py fails when they and the settings modules
disagree.
"""

from __future__ import annotations

from auth_server.settings import AuthSettings
from resource_server.settings import ResourceSettings
from shared.service.settings import ServiceSettings


def table(settings: type[ServiceSettings], skip: frozenset[str] | set[str] = frozenset()) -> str:
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, default, description in settings.env_reference():
        if name in skip:
            continue
        shown = f"`{default}`" if str(default) != "" else "(empty)"
        lines.append(f"| `{name}` | {shown} | {description} |")
    return "\n".join(lines)


def markdown() -> str:
    common = {name for name, _, _ in ServiceSettings.env_reference()}
    return "\n\n".join(
        [
            "Both services:\n\n" + table(ServiceSettings),
            "Authorization server:\n\n" + table(AuthSettings, common),
            "Resource server:\n\n" + table(ResourceSettings, common),
        ]
    )


if __name__ == "__main__":
    print(markdown())
