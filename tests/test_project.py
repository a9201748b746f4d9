"""The project's own promises: README commands, CI entry point, settings reference, test
layout rules."""

from __future__ import annotations

import re
import subprocess
import sys

from shared.service.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_starts_with_exactly_the_two_setup_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_settings_doc_table_matches_the_settings_modules():
    """docs/settings.md lists every setting the services read. Regenerate the part between
    the markers with: python scripts/env_reference.py"""
    generated = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "env_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    settings_doc = (PROJECT_ROOT / "docs" / "settings.md").read_text()
    section = re.search(
        r"<!-- env-reference:start -->\n(.*?)\n<!-- env-reference:end -->", settings_doc, re.S
    ).group(1)
    assert section == generated


def test_every_test_the_security_doc_cites_exists():
    """docs/security.md proves each claim with a named test: a renamed or deleted test must
    not leave the claim pointing at nothing."""
    doc = (PROJECT_ROOT / "docs" / "security.md").read_text()
    cited = set(re.findall(r"::(test_\w+)", doc))
    assert len(cited) > 20
    defined = {
        name
        for path in (PROJECT_ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M)
    }
    assert sorted(cited - defined) == []


def test_no_test_module_imports_from_a_conftest():
    """Helpers shared between test modules live in plain modules (tests/support.py,
    tests/databases.py, tests/live_server.py, ...); fixtures reach other directories through
    `pytest_plugins` in tests/conftest.py. Importing a conftest loads it a second time."""
    importers = [
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "tests").rglob("*.py")
        if re.search(
            r"^\s*(from\s+\S*conftest\s+import|import\s+\S*conftest)", path.read_text(), re.M
        )
    ]
    assert importers == []
