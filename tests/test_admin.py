"""The admin area's foundation: off until an account exists, accounts from the command line,
sign-in with a rate limit and a lockout (same answer and same work for every failure), its own
session (separate from the chat's, expiring, revoked), login required on every route, CSRF on
every POST, an audit log of everything, and pages that axe finds nothing serious on."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from werkzeug.security import check_password_hash

from chatbot.admin import accounts
from chatbot.extensions import db
from chatbot.models import AdminAudit, AdminSession, AdminUser, utcnow

from .a11y import assert_no_serious_violations
from .conftest import LiveServer
from .helpers import HX, conversation_id_from, send

PASSWORD = "correct horse battery"
FAILED = "That name and password didn't work."
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
ES = {"Accept-Language": "es-ES,es;q=0.9"}


@pytest.fixture
def app(app_factory):
    return app_factory(PROVIDER="offline")


def create_user(app, name: str = "ana", password: str = PASSWORD, *args: str):
    return app.test_cli_runner().invoke(
        args=["admin", "create-user", name, "--password-stdin", *args], input=password + "\n"
    )


@pytest.fixture
def admin(app):
    result = create_user(app)
    assert result.exit_code == 0, result.output
    return "ana"


def login(client, name: str = "ana", password: str = PASSWORD, **extra):
    return client.post("/admin/login", data={"name": name, "password": password, **extra})


def audit_actions(app) -> list[tuple[str | None, str, dict]]:
    with app.app_context():
        rows = db.session.execute(select(AdminAudit).order_by(AdminAudit.id)).scalars()
        return [(r.admin_name, r.action, r.detail) for r in rows]


def user_row(app, name: str = "ana") -> AdminUser:
    with app.app_context():
        return db.session.execute(select(AdminUser).where(AdminUser.name == name)).scalar_one()


def without_tokens(response) -> str:
    """A page's text without its CSRF tokens (a new one each request)."""
    return re.sub(r'(content|value)="[\w-]+\.[\w.-]+"', "", response.get_data(as_text=True))


def form_token(html: str) -> str:
    return TOKEN.search(html).group(1)


# --- off until an account exists -----------------------------------------------------------------


def test_the_admin_area_is_an_unknown_page_until_an_account_exists(app, client, app_factory):
    unknown = client.get("/no-such-page")
    for path in ("/admin", "/admin/", "/admin/login", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert without_tokens(response) == without_tokens(unknown), path
        assert sorted(response.headers.keys()) == sorted(unknown.headers.keys()), path
    assert login(client).status_code == 404
    assert client.post("/admin/logout").status_code == 404
    limited = app_factory(
        PROVIDER="offline", RATELIMIT_ENABLED=True, RATELIMIT_ADMIN_LOGINS_PER_IP="1/minute"
    )
    assert [login(limited.test_client()).status_code for _ in range(3)] == [404] * 3  # (not 429)
    assert create_user(app).exit_code == 0
    assert client.get("/admin/login").status_code == 200
    assert client.get("/admin").status_code == 303  # (now: sign in first)


# --- accounts from the command line ----------------------------------------------------------------


def test_create_user_from_standard_input_hashes_with_scrypt(app):
    result = create_user(app)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    user = user_row(app)
    assert user.password_hash.startswith("scrypt:")
    assert check_password_hash(user.password_hash, PASSWORD)
    assert not check_password_hash(user.password_hash, PASSWORD + "x")
    assert user.failed_logins == 0 and user.locked_until is None and user.last_login_at is None
    listed = app.test_cli_runner().invoke(args=["admin", "list-users"])
    assert listed.exit_code == 0 and "ana" in listed.output and "never" in listed.output
    assert audit_actions(app) == [(None, "user_created", {"name": "ana", "via": "cli"})]


def test_create_user_refuses_short_passwords_bad_names_and_duplicates(app):
    short = create_user(app, "ana", "elevenchars")
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    bad = create_user(app, "<script>", PASSWORD)
    assert bad.exit_code != 0 and "a name is" in bad.output
    with app.app_context():
        assert not accounts.any_account()
    assert create_user(app).exit_code == 0
    again = create_user(app)
    assert again.exit_code != 0 and "already" in again.output


def test_create_user_from_the_hidden_prompt_asks_twice(app):
    runner = app.test_cli_runner()
    mismatch = runner.invoke(args=["admin", "create-user", "ana"], input=f"{PASSWORD}\nsomething else!\n")
    assert mismatch.exit_code != 0
    with app.app_context():
        assert not accounts.any_account()
    made = runner.invoke(args=["admin", "create-user", "ana"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    assert PASSWORD not in made.output  # (hidden: never echoed)
    assert check_password_hash(user_row(app).password_hash, PASSWORD)


def test_set_password_and_delete_user(app, admin, client):
    assert login(client).status_code == 303
    runner = app.test_cli_runner()
    new = "another long passphrase"
    changed = runner.invoke(args=["admin", "set-password", "ana", "--password-stdin"], input=new + "\n")
    assert changed.exit_code == 0, changed.output
    assert check_password_hash(user_row(app).password_hash, new)
    assert client.get("/admin").status_code == 303  # the password change ended the session
    assert login(client).status_code == 401
    assert login(client, password=new).status_code == 303
    missing = runner.invoke(args=["admin", "set-password", "bob", "--password-stdin"], input=new + "\n")
    assert missing.exit_code != 0 and "no admin account" in missing.output

    deleted = runner.invoke(args=["admin", "delete-user", "ana", "--yes"])
    assert deleted.exit_code == 0 and "/admin is off" in deleted.output
    assert client.get("/admin").status_code == 404  # no account left: off again
    with app.app_context():
        assert db.session.execute(select(AdminSession)).first() is None
    actions = [action for _, action, _ in audit_actions(app)]
    assert actions == ["user_created", "login", "password_set", "login_failed", "login", "user_deleted"]


# --- signing in ------------------------------------------------------------------------------------


def test_sign_in_and_out(app, admin, client):
    page = client.get("/admin/login")
    assert page.status_code == 200 and 'autocomplete="current-password"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]

    response = login(client)
    assert response.status_code == 303 and response.headers["Location"] == "/admin"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("chatbot_admin=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert PASSWORD not in cookie
    home = client.get("/admin")
    body = home.get_data(as_text=True)
    assert home.status_code == 200 and "Signed in as ana" in body and 'href="/admin/audit"' in body
    for coming in ("Conversations", "Dashboard", "Fine-tuning jobs"):
        assert coming in body
    assert body.count("Coming soon") == 1  # (the fine-tuning jobs' page)
    assert 'href="/admin/dashboard"' in body and 'href="/admin/conversations"' in body
    assert user_row(app).last_login_at is not None
    assert client.get("/admin/login").status_code == 303  # (signed in already: to the area)

    out = client.post("/admin/logout")
    assert out.status_code == 303 and out.headers["Location"] == "/admin/login"
    assert "chatbot_admin=;" in out.headers["Set-Cookie"]
    assert client.get("/admin").status_code == 303


def test_every_failure_says_the_same_thing(app, admin, client):
    wrong = login(client, password="not the password at all")
    unknown = login(client, name="nobody", password=PASSWORD)
    odd = login(client, name="<b>", password="")
    for response in (wrong, unknown, odd):
        assert response.status_code == 401
        text = html.unescape(response.get_data(as_text=True))
        assert FAILED in text and "locked for 15 minutes" in text
        assert "chatbot_admin" not in response.headers.get("Set-Cookie", "")
    assert without_tokens(wrong).replace('value="ana"', "") == without_tokens(unknown).replace(
        'value="nobody"', ""
    )


def test_the_longest_password_works_and_a_longer_one_does_not(app):
    longest = "p" * accounts.MAX_PASSWORD
    assert create_user(app, "long", longest).exit_code == 0
    assert create_user(app, "longer", longest + "p").exit_code != 0
    assert login(app.test_client(), "long", longest + "extra").status_code == 401  # (not cut to fit)
    assert login(app.test_client(), "long", longest).status_code == 303


def test_sign_in_goes_back_to_the_admin_page_asked_for_and_nowhere_else(app, admin):
    client = app.test_client()
    first = client.get("/admin/audit")
    assert first.status_code == 303 and first.headers["Location"] == "/admin/login?next=/admin/audit"
    assert login(client, next="/admin/audit").headers["Location"] == "/admin/audit"
    for elsewhere in (
        "https://evil.example/admin",
        "//evil.example",
        "/c/abc",
        "/admin\\@evil",
        "/administrator",
    ):
        other = app.test_client()
        assert login(other, next=elsewhere).headers["Location"] == "/admin", elsewhere


def test_unknown_and_locked_names_cost_the_same_password_check(app, admin, client, monkeypatch):
    checked = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    login(client, name="nobody")
    assert len(checked) == 1 and checked[0].startswith("scrypt:")  # the dummy, made like real ones
    with app.app_context():
        db.session.execute(update(AdminUser).values(locked_until=utcnow() + timedelta(minutes=5)))
        db.session.commit()
    login(client)
    assert len(checked) == 2


# --- login required on every route -------------------------------------------------------------------


def admin_routes(app) -> list[tuple[str, str]]:
    """Every (method, URL) of the admin blueprint, read from the URL map: a new route is in it."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".", 1)[0] != "admin":
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", "1", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, url))
    return found


def test_every_admin_route_needs_a_signed_in_admin(app, admin):
    routes = admin_routes(app)
    endpoints = {endpoint for endpoint, _, _ in routes}
    assert {"admin.home", "admin.audit_log", "admin.logout", "admin.login"} <= endpoints
    protected = [(m, u) for e, m, u in routes if e != "admin.login"]
    forged = app.test_client()
    forged.set_cookie("chatbot_admin", "not-a-real-token.signature")
    customer = app.test_client()
    send(customer, "hello")  # a chat session, no admin one
    for client in (app.test_client(), forged, customer):
        for method, url in protected:
            page = client.open(url, method=method)
            assert page.status_code == 303, (method, url)
            assert page.headers["Location"].startswith("/admin/login"), (method, url)
            partial = client.open(url, method=method, headers=HX)
            assert partial.status_code == 401, (method, url)
    assert [a for _, a, _ in audit_actions(app)] == ["user_created"]  # nothing reached a view


# --- rate limit and lockout -----------------------------------------------------------------------


def test_sign_in_attempts_are_rate_limited_per_address(app_factory):
    app = app_factory(PROVIDER="offline", RATELIMIT_ENABLED=True, RATELIMIT_ADMIN_LOGINS_PER_IP="3/minute")
    assert create_user(app).exit_code == 0
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    for _ in range(3):
        assert login(guesser, password="wrong password!").status_code == 401
    limited = login(guesser)  # (even the right password: the limit counts attempts)
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert guesser.get("/admin/login").status_code == 200  # reading the form is not an attempt
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.10"
    assert login(other).status_code == 303


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(app, admin, client):
    for _ in range(4):
        assert login(client, password="wrong password!").status_code == 401
    assert user_row(app).failed_logins == 4
    assert login(client).status_code == 303  # a success clears the count
    assert user_row(app).failed_logins == 0
    client.post("/admin/logout")

    for _ in range(5):
        assert login(client, password="wrong password!").status_code == 401
    locked = user_row(app)
    assert locked.locked_until is not None
    assert timedelta(minutes=14) < locked.locked_until - utcnow() <= timedelta(minutes=15)
    refused = login(client)  # the right password, while locked
    assert refused.status_code == 401 and FAILED in html.unescape(refused.get_data(as_text=True))
    assert "chatbot_admin" not in refused.headers.get("Set-Cookie", "")
    other_browser = app.test_client()  # (the lock is the account's, in the database)
    assert login(other_browser).status_code == 401

    with app.app_context():  # fifteen minutes later
        db.session.execute(update(AdminUser).values(locked_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert login(client).status_code == 303
    assert user_row(app).failed_logins == 0 and user_row(app).locked_until is None

    actions = audit_actions(app)
    failed = [(name, detail["reason"]) for name, action, detail in actions if action == "login_failed"]
    assert (
        failed
        == [("ana", "wrong")] * 4 + [("ana", "wrong")] * 4 + [("ana", "locked_now")] + [("ana", "locked")] * 2
    )
    assert [name for name, action, _ in actions if action == "locked"] == ["ana"]


def test_the_lockout_is_shared_by_every_app_on_the_database(app_factory, admin, app):
    second = app_factory(PROVIDER="offline")  # another worker on the same database
    for i in range(5):
        worker = app if i % 2 else second
        assert login(worker.test_client(), password="wrong password!").status_code == 401
    assert user_row(app).locked_until is not None
    assert login(app.test_client()).status_code == 401
    assert login(second.test_client()).status_code == 401


# --- CSRF ------------------------------------------------------------------------------------------


def test_sign_in_and_out_need_the_pages_csrf_token(app_factory):
    app = app_factory(PROVIDER="offline", CSRF_ENABLED=True)
    assert create_user(app).exit_code == 0
    client = app.test_client()
    assert login(client).status_code == 403
    assert login(client, csrf_token="forged").status_code == 403
    token = form_token(client.get("/admin/login").get_data(as_text=True))
    assert login(client, csrf_token=token).status_code == 303

    assert client.post("/admin/logout").status_code == 403
    chat_page = client.get("/").get_data(as_text=True)
    chat_token = chat_page.split('name="csrf-token" id="csrf-token" content="', 1)[1].split('"', 1)[0]
    assert client.post("/admin/logout", data={"csrf_token": chat_token}).status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 403  # (pre-sign-in)
    assert client.get("/admin").status_code == 200  # still signed in
    home_token = form_token(client.get("/admin").get_data(as_text=True))
    out = client.post("/admin/logout", data={"csrf_token": home_token})
    assert out.status_code == 303
    assert client.get("/admin").status_code == 303
    other_site = client.post(
        "/admin/login",
        data={"name": "ana", "password": PASSWORD, "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert other_site.status_code == 403


# --- its own session ----------------------------------------------------------------------------


def test_the_admin_session_is_separate_from_the_chat(app, admin):
    client = app.test_client()
    cid = conversation_id_from(send(client, "my phone won't charge"))
    chat_cookie = client.get_cookie("chatbot_session").value
    assert client.get("/admin").status_code == 303  # a customer's session is no sign-in

    signed_in = login(client)
    assert "chatbot_session" not in signed_in.headers.get("Set-Cookie", "")
    assert client.get("/admin").status_code == 200
    assert client.get(f"/c/{cid}").status_code == 200
    out = client.post("/admin/logout")
    assert "chatbot_session" not in out.headers.get("Set-Cookie", "")
    assert client.get_cookie("chatbot_session").value == chat_cookie
    assert client.get(f"/c/{cid}").status_code == 200  # the chat carries on

    stranger = app.test_client()  # the admin cookie names no chat owner either
    stranger.set_cookie("chatbot_session", client.get_cookie("chatbot_session").value)
    assert stranger.get("/admin").status_code == 303


def test_each_sign_in_is_a_new_session_and_logout_revokes_it(app, admin):
    client = app.test_client()
    login(client)
    first = client.get_cookie("chatbot_admin").value
    login(client)  # (a sign-in over a sign-in: the old one ends)
    second = client.get_cookie("chatbot_admin").value
    assert first != second
    replay = app.test_client()
    replay.set_cookie("chatbot_admin", first)
    assert replay.get("/admin").status_code == 303
    client.post("/admin/logout")
    replay.set_cookie("chatbot_admin", second)
    assert replay.get("/admin").status_code == 303  # the cookie is worth nothing after logout
    with app.app_context():
        assert db.session.execute(select(AdminSession)).first() is None


@pytest.mark.parametrize("ended", ["idle", "absolute"])
def test_a_session_ends_when_idle_or_too_old(app, admin, ended):
    client = app.test_client()
    login(client)
    assert client.get("/admin").status_code == 200
    with app.app_context():
        if ended == "idle":  # an hour without a request
            values = {"seen_at": utcnow() - timedelta(minutes=61)}
        else:  # twelve hours after sign-in, however busy
            values = {"expires_at": utcnow() - timedelta(seconds=1)}
        db.session.execute(update(AdminSession).values(**values))
        db.session.commit()
    assert client.get("/admin").status_code == 303
    with app.app_context():
        assert db.session.execute(select(AdminSession)).first() is None


def test_a_session_lasts_twelve_hours_at_most(app, admin):
    client = app.test_client()
    response = login(client)
    assert "Max-Age=43200" in response.headers["Set-Cookie"]
    with app.app_context():
        row = db.session.execute(select(AdminSession)).scalar_one()
        assert row.expires_at - row.created_at == timedelta(hours=12)
        assert len(row.token_hash) == 64 and row.token_hash not in client.get_cookie("chatbot_admin").value


def test_production_names_the_cookie_for_this_host_over_https(app_factory):
    app = app_factory(
        PROVIDER="offline", PRODUCTION=True, SECRET_KEY="k" * 20 + "0123456789abcdefghij", CSRF_ENABLED=True
    )
    assert create_user(app).exit_code == 0
    client = app.test_client()
    form = client.get("/admin/login", base_url="https://localhost").get_data(as_text=True)
    response = client.post(
        "/admin/login",
        data={"name": "ana", "password": PASSWORD, "csrf_token": form_token(form)},
        base_url="https://localhost",
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-chatbot_admin=") and "Secure" in cookie and "Path=/" in cookie


# --- the audit log -----------------------------------------------------------------------------------


def test_every_sign_in_event_is_audited_and_listed(app, admin):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    login(client, name="nobody", password=PASSWORD)
    login(client, password="wrong password!")
    login(client)
    client.post("/admin/logout")
    login(client)
    with app.app_context():
        rows = db.session.execute(select(AdminAudit).order_by(AdminAudit.id)).scalars().all()
        seen = [(r.admin_name, r.action, r.detail, r.remote_addr) for r in rows]
    assert seen == [
        (None, "user_created", {"name": "ana", "via": "cli"}, None),
        (None, "login_failed", {"reason": "unknown"}, "192.0.2.7"),  # (what was typed: not kept)
        ("ana", "login_failed", {"reason": "wrong"}, "192.0.2.7"),
        ("ana", "login", {}, "192.0.2.7"),
        ("ana", "logout", {}, "192.0.2.7"),
        ("ana", "login", {}, "192.0.2.7"),
    ]
    page = client.get("/admin/audit").get_data(as_text=True)
    assert page.count("<tr>") == 1 + len(seen)  # (the header row)
    assert "Sign-in failed" in page and "Signed out" in page and "192.0.2.7" in page
    assert PASSWORD not in page and "wrong password!" not in page


def test_the_audit_page_shows_the_latest_two_hundred(app, admin):
    from chatbot.admin.audit import audit

    with app.app_context():
        for i in range(205):
            audit("test_action", n=i)
    client = app.test_client()
    login(client)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert page.count("<tr>") == 201
    assert "n: 204" in page and "n: 5<" not in page and ">Signed in<" in page


def test_the_admin_pages_speak_spanish(app, admin):
    client = app.test_client()
    assert "Iniciar sesión" in client.get("/admin/login", headers=ES).get_data(as_text=True)
    failed = client.post("/admin/login", data={"name": "ana", "password": "nope"}, headers=ES)
    assert "bloquea" in failed.get_data(as_text=True)
    login(client)
    home = client.get("/admin", headers=ES).get_data(as_text=True)
    assert '<html lang="es"' in home and "Registro de auditoría" in home and "Próximamente" in home


# --- in a browser: axe ----------------------------------------------------------------------------


@pytest.fixture
def admin_server(app_factory):
    app = app_factory(PROVIDER="offline", CSRF_ENABLED=True)
    assert create_user(app).exit_code == 0
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("theme", "lang", "width"), [("light", "en", 1100), ("dark", "es", 360)], ids=["light-en", "dark-es-360"]
)
def test_axe_finds_nothing_serious_on_the_sign_in_page_and_the_admin_home(
    browser, admin_server, theme, lang, width
):
    from playwright.sync_api import expect

    from .test_a11y import open_page

    page = open_page(browser, f"{admin_server.url}/admin/login", theme=theme, lang=lang, width=width)
    try:
        assert_no_serious_violations(page, f"sign-in page, {theme}, {lang}, {width}px")
        page.fill("#admin-name", "ana")
        page.fill("#admin-password", "not the password!")
        page.locator("form.admin-form button[type=submit]").click()
        expect(page.locator("#admin-error")).to_be_visible()
        assert_no_serious_violations(page, f"sign-in failed, {theme}, {lang}, {width}px")
        page.fill("#admin-password", PASSWORD)
        page.locator("form.admin-form button[type=submit]").click()
        expect(page.locator(".admin-who")).to_contain_text("ana")
        assert_no_serious_violations(page, f"admin home, {theme}, {lang}, {width}px")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
        page.locator(".admin-sections a").first.click()
        expect(page.locator("h1")).to_have_text("Audit log" if lang == "en" else "Registro de auditoría")
        assert_no_serious_violations(page, f"audit log, {theme}, {lang}, {width}px")
        page.locator(".admin-logout button").click()
        expect(page.locator("#admin-name")).to_be_visible()
        assert page.page_errors == []
    finally:
        page.context.close()
