"""requirements.lock (written by `make lock`, pip-compile from pyproject.toml) is what the image
installs with --require-hashes: it must pin every dependency pyproject.toml declares, at a
version that dependency's specifier accepts, each with its hashes."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from shared.service.settings import PROJECT_ROOT

PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")


def locked() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes), from the lock file."""
    pins: dict[str, tuple[Version, int]] = {}
    name = None
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        pin = PIN.match(line)
        if pin:
            name = canonicalize_name(pin.group(1))
            pins[name] = (Version(pin.group(2)), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def declared() -> list[Requirement]:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    runtime = pyproject["project"]["dependencies"]
    build = pyproject["build-system"]["requires"]
    return [Requirement(spec) for spec in [*runtime, *build]]


def test_the_lock_pins_every_declared_dependency_within_its_specifier():
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement}: run `make lock`"
        )
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{name}-{extra}") in pins, f"{requirement}: extra unlocked"


def test_every_pin_has_a_hash():
    unhashed = [name for name, (_, hashes) in locked().items() if hashes == 0]
    assert unhashed == []
