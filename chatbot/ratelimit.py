"""Rate limits (Flask-Limiter): how fast one browser, or one address, may send messages.

- messages (``POST /c`` and ``POST /c/<id>/messages``, retries too): per owner and per client
  address, per minute and per day, one count for both routes;
- Stop (``POST /c/<id>/messages/<n>/stop``): per address, per minute;
- new sessions (a first message from a browser without an owner yet): per address, per hour;
- admin sign-in attempts (``POST /admin/login``): per address.

Each limit is a setting (``RATELIMIT_*`` in ``config.py``: limit strings like
``"20/minute;500/day"``; an empty string switches that one off). The counts live in memory (per
process: each gunicorn worker counts on its own) unless ``REDIS_URL`` is set, or
``RATELIMIT_STORAGE_URI`` names a storage; then every worker and host shares them.
``CHATBOT_RATELIMIT_ENABLED=false`` switches every limit off: for load benchmarks only.

A limit is checked before the route's body runs: a refused request saves nothing and issues no
session. The 429 itself is rendered by ``errors.py``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, current_app, request
from flask_limiter import Limiter, RequestLimit, RouteLimit
from limits import parse_many

EXTENSION = "chatbot.ratelimit"
LIMIT_SETTINGS = (
    "RATELIMIT_MESSAGES_PER_OWNER",
    "RATELIMIT_MESSAGES_PER_IP",
    "RATELIMIT_STOPS_PER_IP",
    "RATELIMIT_NEW_SESSIONS_PER_IP",
    "RATELIMIT_ADMIN_LOGINS_PER_IP",
)
# Without these a Redis that stops answering would hold every message request; with them the
# request fails over to this process's memory (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED).
REDIS_OPTIONS: dict[str, str | int] = {"socket_timeout": 1, "socket_connect_timeout": 1}

F = TypeVar("F", bound=Callable[..., Any])


# --- who is counted ----------------------------------------------------------------------------


def client_address() -> str:
    """The client's address (``security.py``'s ProxyFix has made it the real one behind trusted
    proxies). IPv6 counts per /64: one host is usually given a whole /64 and can pick any address
    in it."""
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def ip_key() -> str:
    return "ip:" + client_address()


def owner_key() -> str:
    """The browser's owner, or its address before its first message has issued one. The token is
    hashed: it is kept in the storage's keys and named in Flask-Limiter's log lines."""
    from .chat.views import current_owner  # (views imports this module)

    owner = current_owner()
    if owner is None:
        return ip_key()
    return "owner:" + hashlib.sha256(owner.encode()).hexdigest()[:32]


def has_owner() -> bool:
    from .chat.views import current_owner

    return current_owner() is not None


# --- the limiter -------------------------------------------------------------------------------


class _AppLimiters(Limiter):
    """The limiter the routes are decorated with (at import, unbound).

    Flask-Limiter keeps its storage and settings on the extension object: one object initialised
    for two apps (tests, a process that builds the app twice) would count both apps in the storage
    of the last one and keep the first one's key prefix. So ``init_app`` gives each app its own
    ``Limiter``, sharing these decorations, and this one hands each request to the current app's.
    """

    def for_app(self) -> Limiter:
        limiter: Limiter = current_app.extensions[EXTENSION]
        return limiter

    def identify_request(self) -> str:
        return self.for_app().identify_request()

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        self.for_app()._check_request_limit(callable_name, in_middleware)

    @property
    def current_limit(self) -> RequestLimit | None:
        return self.for_app().current_limit

    @property
    def current_limits(self) -> list[RequestLimit]:
        return self.for_app().current_limits


limiter = _AppLimiters(key_func=ip_key)


def _limit(setting: str, scope: str, key_func: Callable[[], str], **options: Any) -> RouteLimit:
    """A limit read from the app's config at each request, counted under ``scope`` (one count for
    every route it decorates)."""
    return limiter.shared_limit(
        lambda: str(current_app.config[setting]).strip(), scope, key_func=key_func, **options
    )


_messages_per_owner = _limit("RATELIMIT_MESSAGES_PER_OWNER", "messages-owner", owner_key)
_messages_per_ip = _limit("RATELIMIT_MESSAGES_PER_IP", "messages-ip", ip_key)

#: ``POST /c`` from a browser that has no owner yet (other limits count its message too).
new_sessions = _limit("RATELIMIT_NEW_SESSIONS_PER_IP", "new-sessions", ip_key, exempt_when=has_owner)
stops = _limit("RATELIMIT_STOPS_PER_IP", "stops", ip_key)


def admin_area_off() -> bool:
    """No admin account yet: ``/admin`` answers 404 like an unknown page (never 429 either)."""
    from .admin.accounts import any_account  # (the admin views import this module)

    return not any_account()


#: ``POST /admin/login``: password guesses per address (the lockout counts them per account)
admin_logins = _limit(
    "RATELIMIT_ADMIN_LOGINS_PER_IP", "admin-logins", ip_key, methods=["POST"], exempt_when=admin_area_off
)


def messages(view: F) -> F:
    """Messages, retries included: per owner and per address, one count for every route."""
    return cast(F, _messages_per_owner(_messages_per_ip(view)))


def limited_messages() -> bool:
    """Whether the limit this request broke counts messages (else clicks: Stop, ratings, versions)."""
    broken = limiter.current_limit
    return broken is None or not any(f"/{scope}/" in broken.key for scope in ("stops", "admin-logins"))


def limited_logins() -> bool:
    """Whether the limit this request broke counts admin sign-in attempts."""
    broken = limiter.current_limit
    return broken is not None and "/admin-logins/" in broken.key


def retry_after() -> int | None:
    """Seconds until the limit this request broke lets it through again (None: no limit known)."""
    broken = limiter.current_limit
    if broken is None or not broken.breached:
        return None
    try:
        reset_at = broken.window.reset_time
    except Exception:  # the storage failed since the check: the caller's guess will do
        current_app.logger.warning("rate limit storage unavailable for Retry-After", exc_info=True)
        return None
    return max(1, math.ceil(reset_at - time.time()))


def init_app(app: Flask) -> None:
    config = app.config
    for setting in LIMIT_SETTINGS:  # a typo fails the start, not every request
        value = config[setting]
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            if value.strip():
                parse_many(value)
        except ValueError:
            raise RuntimeError(
                f"CHATBOT_{setting} must be limits like '20/minute;500/day' (or empty for none), "
                f"not {value!r}"
            ) from None
    # (passed, not written back to the config: a Redis URL may carry a password)
    storage = config["RATELIMIT_STORAGE_URI"] or config["REDIS_URL"] or "memory://"
    options = REDIS_OPTIONS if storage.startswith(("redis://", "rediss://", "redis+unix://")) else {}

    # every other setting from the config (RATELIMIT_*; its RATELIMIT_STORAGE_OPTIONS win)
    for_app = Limiter(key_func=ip_key, storage_uri=storage, storage_options=dict(options))
    for_app.limit_manager = limiter.limit_manager  # the routes' decorations
    for_app._marked_for_limiting = limiter._marked_for_limiting
    for_app.init_app(app)
    app.extensions[EXTENSION] = for_app
