"""Issue 11's promise across two browsers: "Sign out everywhere" on the account page in one
browser signs the demo web app out in another on its very next request."""

from __future__ import annotations

from tests.browser.test_account_pages import open_account
from tests.browser.test_demo_web import add_note, sign_in
from tests.demo_web.support import start_demo_web
from tests.support import start_auth_server, start_resource_server


def test_sign_out_everywhere_in_one_browser_signs_the_demo_app_out_in_another(
    serve, make_database_url, tmp_path, new_context, shot
):
    auth = start_auth_server(serve, make_database_url("auth"))
    notes_api = start_resource_server(serve, make_database_url("notes"), auth)
    demo_web = start_demo_web(serve, auth, notes_api, tmp_path)

    app_page = new_context().new_page()
    sign_in(app_page, demo_web)
    add_note(app_page, "before")
    assert app_page.get_by_role("button", name="Sign out").is_visible()

    account_page = new_context().new_page()
    open_account(auth, account_page)
    account_page.get_by_role("button", name="Sign out everywhere").click()
    account_page.get_by_role("status").wait_for()

    # The app's access token is refused, its refresh gets invalid_grant: it shows Sign in.
    app_page.reload()
    app_page.get_by_role("link", name="Sign in").wait_for()
    assert app_page.get_by_role("button", name="Sign out").count() == 0
    assert app_page.get_by_role("listitem").count() == 0
    shot(app_page, "demo-app-signed-out")
