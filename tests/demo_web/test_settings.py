"""docs/demo-web.md documents every setting of the demo web app, with its real default."""

from __future__ import annotations

import re

import pytest

from examples.demo_web.settings import DemoWebSettings
from shared.service.settings import PROJECT_ROOT


def test_the_doc_lists_every_setting_with_its_default():
    doc = (PROJECT_ROOT / "docs" / "demo-web.md").read_text()
    listed = dict(re.findall(r"^\| `(DEMO_WEB_[A-Z_]+)` \| `([^`]*)` \|", doc, re.M))
    expected = {
        name: default.replace(str(PROJECT_ROOT), "<checkout>")
        for name, default, _ in DemoWebSettings.env_reference()
    }
    assert listed == expected


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEMO_WEB_URL", "https://notes.example")
    monkeypatch.setenv("DEMO_WEB_ISSUER", "https://id.example")
    settings = DemoWebSettings()
    assert settings.redirect_uri == "https://notes.example/callback"
    assert settings.secure_cookies
    assert settings.backchannel_url == "https://id.example"


@pytest.mark.parametrize("name", ["demo_web_url", "demo_web_issuer", "demo_web_notes_url"])
def test_a_url_setting_that_is_no_http_url_stops_start_up(name):
    with pytest.raises(ValueError, match=name.upper()):
        DemoWebSettings(**{name: "javascript:alert(1)"})
