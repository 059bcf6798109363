"""Safe in front of the public: response headers, and refusing requests from other sites.

- Every response (page, partial, stream, error, static file) carries a strict Content Security
  Policy (scripts and styles from this origin only, no inline code, no eval, no framing), and
  ``nosniff``, ``Referrer-Policy``, ``Permissions-Policy``; HSTS in production.
- A state-changing request (anything but GET/HEAD/OPTIONS) that a browser marks as coming from
  another site (``Sec-Fetch-Site: cross-site`` or ``same-site`` — a sibling subdomain or another
  port), or whose ``Origin`` is not this one, is refused with 403 before the session is read or
  written: it can't plant, replace or use the visitor's session.
"""

from __future__ import annotations

from flask import Flask, abort, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

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
CROSS_SITE = "This request came from another website, so it was refused. Please use the chat page itself."


def add_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", PERMISSIONS)
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config["PRODUCTION"]:
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
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


def init_app(app: Flask) -> None:
    hops = int(app.config["PROXY_HOPS"])
    if hops:  # the client's address and scheme from this many trusted proxies, no more
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.before_request(refuse_other_sites)
    app.after_request(add_headers)
