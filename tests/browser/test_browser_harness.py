"""The harness itself: Chromium starts, renders a page of ours and Playwright reads it."""

from __future__ import annotations

from flask import Flask


def test_chromium_renders_a_page_served_by_a_live_server(serve, new_context, shot):
    app = Flask("probe")

    @app.get("/")
    def index():
        return "<!doctype html><title>probe</title><button>Press</button>"

    server = serve(app)
    page = new_context().new_page()
    page.goto(server.url + "/")
    assert page.get_by_role("button", name="Press").is_visible()
    assert shot(page, "probe").stat().st_size > 0
