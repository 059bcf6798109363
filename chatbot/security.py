"""Safe in front of the public: response headers, and refusing requests from other sites.

- Every response (page, partial, stream, error, static file) carries a strict Content Security
  Policy (scripts and styles from this origin only, no inline code, no eval, no framing), and
  ``nosniff``, ``Referrer-Policy``, ``Permissions-Policy``; HSTS in production.
- A state-changing request (anything but GET/HEAD/OPTIONS) that a browser marks as coming from
  another site (``Sec-Fetch-Site: cross-site`` or ``same-site`` — a sibling subdomain or another
  port), or whose ``Origin`` is not this one, is refused with 403 before the session is read or
  written: it can't plant, replace or use the visitor's session.
- It must also carry a CSRF token: the page's ``<meta name="csrf-token">`` (sent by htmx as the
  ``X-CSRF-Token`` header) or the forms' hidden ``csrf_token`` field. The token is signed with
  the secret key and bound to the browser's owner token (or to "no owner yet"), so it creates no
  session for a visitor who only reads; the first accepted message issues the owner and the
  stream hands the page a new token. A blueprint with a sign-in of its own (the admin area) binds
  its pages' tokens to that instead (``bind_csrf``): a token from the chat can't be used there.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, abort, current_app, g, request, session
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from .i18n import _, _l

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE = _l("This request came from another website, so it was refused. Please use the chat page itself.")


HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Permissions-Policy", PERMISSIONS),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def add_headers(response: Response) -> Response:
    """The same headers on every response (set, not defaulted: nothing else sets these, and a
    lookup of a missing header costs an exception in werkzeug)."""
    headers = response.headers
    for name, value in HEADERS:
        headers[name] = value
    if current_app.config["PRODUCTION"]:
        headers[HSTS[0]] = HSTS[1]
    return response


def refuse_other_sites() -> None:
    """Before anything else: a state-changing request from another site gets 403."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site not in ("same-origin", "none"):
            abort(403, description=CROSS_SITE)
        return
    origin = request.headers.get("Origin")  # browsers without fetch metadata
    if origin is not None and origin != request.host_url.rstrip("/"):
        abort(403, description=CROSS_SITE)


STALE = _l("This page is out of date (its security token has expired). Please reload it and try again.")


def _serializer() -> URLSafeTimedSerializer:
    serializer: URLSafeTimedSerializer | None = current_app.extensions.get("chatbot.csrf")
    if serializer is None:  # (built once per app: the key doesn't change while it runs)
        serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="chatbot.csrf")
        current_app.extensions["chatbot.csrf"] = serializer
    return serializer


BINDERS = "chatbot.csrf_binders"


def bind_csrf(app: Flask, blueprint: str, binder: Callable[[], str]) -> None:
    """Bind the tokens of ``blueprint``'s requests to what ``binder`` returns (its own sign-in)
    rather than to the browser's owner token. The value must differ from any owner token."""
    app.extensions.setdefault(BINDERS, {})[blueprint] = binder


def _bound_to() -> str:
    """What this request's token is bound to: its blueprint's binder, else the owner token."""
    binder = current_app.extensions.get(BINDERS, {}).get(request.blueprint)
    if binder is not None:
        bound: str = binder()
        return bound
    return session.get("owner") or ""


def csrf_token() -> str:
    """This browser's CSRF token (one per request, bound to its owner token, or to what its
    blueprint names: ``bind_csrf``)."""
    if "csrf_token" not in g:
        g.csrf_token = _serializer().dumps(_bound_to())
    token: str = g.csrf_token
    return token


def check_body() -> None:
    """A state-changing request states its length (browsers always do): a chunked body of unknown
    size is refused rather than cut at the limit and half-used; and no more form fields than
    MAX_FORM_PARTS, however the form is encoded."""
    if request.method in SAFE_METHODS:
        return
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        abort(411, description=_("Please send the request with its length (Content-Length)."))
    fields = len(list(request.form.items(multi=True))) + len(list(request.files.items(multi=True)))
    if fields > int(current_app.config["MAX_FORM_PARTS"]):
        abort(413)


def check_csrf() -> None:
    if request.method in SAFE_METHODS or not current_app.config["CSRF_ENABLED"]:
        return
    token = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    try:
        bound = _serializer().loads(token, max_age=int(current_app.config["CSRF_TOKEN_SECONDS"]))
    except BadData:
        abort(403, description=STALE)
    if bound != _bound_to():
        abort(403, description=STALE)


def init_app(app: Flask) -> None:
    hops = int(app.config["PROXY_HOPS"])
    if hops:  # the client's address and scheme from this many trusted proxies, no more
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.before_request(refuse_other_sites)
    app.before_request(check_body)
    app.before_request(check_csrf)
    app.after_request(add_headers)
    app.add_template_global(csrf_token)
