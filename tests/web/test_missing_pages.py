"""A link to a dataset or project that does not exist (deleted, or another organisation's) shows
the API's message, and neither waits forever ("Loading…") nor offers what the page would hold
(an empty dataset's "link a folder", a verify button that can only fail)."""

from __future__ import annotations

import uuid

import pytest

from corral.core import sessions
from tests.browser import record_csp_violations
from tests.web.test_workflow import PASSWORD, sign_in, ui_server  # noqa: F401 (a fixture)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_missing_dataset_or_project_says_so(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    record_csp_violations(page, errors)
    missing = str(uuid.uuid4())
    main = page.get_by_role("main")
    try:
        sign_in(page, ui_server, admin.email)
        expect(page.get_by_role("navigation", name="Main")).to_contain_text(admin.email)

        page.goto(f"{ui_server}/datasets/{missing}")
        expect(main.get_by_role("alert")).to_have_text(f"dataset {missing} not found")
        expect(main).not_to_contain_text("link a folder")
        expect(main).not_to_contain_text("Loading")
        expect(main.get_by_role("button", name="Verify file locations")).to_be_disabled()

        page.goto(f"{ui_server}/projects/{missing}")
        expect(main.get_by_role("alert")).to_have_text(f"project {missing} not found")
        expect(main).not_to_contain_text("Loading")
        assert errors == []
    finally:
        context.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_server_that_fails_the_first_request_is_not_a_sign_in_form(chromium, ui_server: str, make_user, db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The page's first request (``/api/v1/me``) failing with a 503 (the database restarting) or
    no answer at all showed the sign-in form, as if the session were gone; signing in again could
    only fail too.  Now it says the server is not answering, with a retry that picks the session
    up.  (The failures are made at the browser's network edge; the server is real.)"""
    from playwright.sync_api import expect

    admin = make_user("admin@acme.io", org="Acme")
    with db.write() as s:
        sessions.set_password(s, admin.email, PASSWORD)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    nav = page.get_by_role("navigation", name="Main")
    try:
        sign_in(page, ui_server, admin.email)
        expect(nav).to_contain_text(admin.email)

        body = '{"code": "unavailable", "message": "the database is not answering: try again", "errors": []}'
        for fail in (lambda r: r.fulfill(status=503, body=body, headers={"content-type": "application/json"}),
                     lambda r: r.abort("connectionrefused")):
            page.route("**/api/v1/me", fail)
            page.reload()
            expect(page.get_by_role("alert")).to_contain_text("Could not reach the server")
            expect(page.get_by_label("Password")).to_have_count(0)
            page.unroute("**/api/v1/me")
            page.get_by_role("button", name="Try again").click()
            expect(nav).to_contain_text(admin.email)  # the session was kept all along
        expect(page.get_by_text("the database is not answering")).to_have_count(0)

        context.clear_cookies()  # a real 401 still asks to sign in
        page.reload()
        expect(page.get_by_label("Password")).to_be_visible()
    finally:
        context.close()
