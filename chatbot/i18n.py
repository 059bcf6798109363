"""Two languages: the interface in English and Spanish (Flask-Babel).

- The language of a request is the visitor's choice (the switcher's cookie, a year), else the
  best match of ``Accept-Language``, else English; ``<html lang>`` follows. Outside a request
  (the CLI, a reply written after its page left) strings stay English.
- Strings are marked with ``_`` in Python and templates. Text stored before it is shown (a failed
  reply's line, written by a turn that may have no page any more) is stored in English, marked
  with ``N_`` for the catalog, and translated when shown (``_(stored)``).
- The browser's strings (chat.js) come from the page: ``js_strings()`` in a JSON block.
- The Spanish catalog is ``chatbot/translations/es/LC_MESSAGES/messages.po``. Building the
  package compiles it (setup.py); a checkout whose compiled catalog is missing or older than the
  ``.po`` compiles it in memory at start-up, so an edited translation shows on the next start.
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask_babel
from babel.dates import format_date, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from flask import Blueprint, Flask, abort, g, has_request_context, redirect, request
from flask_babel import Babel, get_locale
from werkzeug.wrappers import Response

from .language import detect

LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT = "en"
COOKIE = "chatbot_lang"
COOKIE_SECONDS = 365 * 24 * 3600
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

__all__ = ["COOKIE", "LANGUAGES", "N_", "_", "_l", "init_app", "language", "ngettext", "number"]

log = logging.getLogger(__name__)
bp = Blueprint("i18n", __name__)


def _translations() -> Any:
    """This request's catalog, looked up once a request (a page says a few hundred strings, and
    Flask-Babel's own lookup walks its context each time: a quarter of a long page's time)."""
    if not has_request_context():
        return flask_babel.get_translations()
    catalog = g.get("_chatbot_translations")
    if catalog is None:
        catalog = g._chatbot_translations = flask_babel.get_translations()
    return catalog


def _(text: str, **variables: Any) -> str:
    """``text`` in the page's language (``%(name)s`` placeholders filled from ``variables``)."""
    said = str(_translations().ugettext(text))
    return said % variables if variables else said


def _l(text: str, **variables: Any) -> Any:
    """``_`` when the string is used (for a constant defined before any request)."""
    return flask_babel.lazy_gettext(text, **variables)


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The singular or the plural of the page's language for ``num`` (``%(num)s`` is filled)."""
    variables.setdefault("num", num)
    return str(_translations().ungettext(singular, plural, num)) % variables


def N_(text: str) -> str:
    """Marks ``text`` for the catalog, untranslated: it is stored, and translated when shown."""
    return text


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, DEFAULT) or DEFAULT


def language() -> str:
    """The language of this request's page ("en" or "es")."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT


# --- dates ---------------------------------------------------------------------------------------


def ago(when: datetime, now: datetime | None = None) -> str:
    """A short relative time in the page's language: "just now", "5 minutes ago", "yesterday",
    "4 days ago", then the date ("3 Nov" / "3 nov"; with the year when it isn't this one)."""
    now = now or datetime.now(UTC)
    locale = language()
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return _("just now")
    days = (now.date() - when.astimezone(UTC).date()).days
    if seconds < 3600 or days == 0:
        unit: Literal["minute", "hour"] = "minute" if seconds < 3600 else "hour"
        return format_timedelta(
            when - now, granularity=unit, threshold=2, add_direction=True, format="short", locale=locale
        )
    if days == 1:
        return _("yesterday")
    if days < 7:
        return format_timedelta(when - now, granularity="day", add_direction=True, locale=locale)
    return format_date(when, "d MMM" if when.year == now.year else "d MMM y", locale=locale)


TZ_COOKIE = "chatbot_tz"  # the reader's time zone, as their browser names it (first-paint.js)


def reader_zone() -> tzinfo | None:
    """The reader's time zone, once their browser has told us (None: not yet; UTC is shown)."""
    if not has_request_context():
        return None
    name = unquote(request.cookies.get(TZ_COOKIE, ""))  # ("America%2FMexico_City", as set by JS)
    return _zone(name) if name else None


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name) if len(name) <= 64 and ".." not in name else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_day(when: datetime) -> date:
    """The day of ``when`` where the reader is."""
    return when.astimezone(reader_zone() or UTC).date()


def day_label(when: datetime, now: datetime | None = None) -> str:
    """A day separator's words: "Today", "Yesterday" or the date ("Monday, 3 November 2026")."""
    zone = reader_zone() or UTC
    days = ((now or datetime.now(UTC)).astimezone(zone).date() - when.astimezone(zone).date()).days
    if days == 0:
        return _("Today")
    if days == 1:
        return _("Yesterday")
    return format_date(when.astimezone(zone), "full", locale=language())


def number(value: int) -> str:
    """A count as the page's language writes it ("8,000" / "8000"; "12,000" / "12.000")."""
    return format_decimal(value, locale=language())


def clock(when: datetime) -> str:
    """The time of day where the reader is ("10:42"), or in UTC ("10:42 UTC") until their
    browser has said where that is (it shows it in local time then)."""
    zone = reader_zone()
    if zone is None:
        return format_time(when, "HH:mm", tzinfo=UTC, locale=language()) + " UTC"
    return format_time(when, "HH:mm", tzinfo=zone, locale=language())


def message_lang(message: Any) -> str | None:
    """A message's language, when known: an answer's was noted when it was saved; a customer's
    (short) is told from its words. None: the page's own."""
    meta = message.meta or {}
    if "lang" in meta:
        return str(meta["lang"])
    return detect(message.content) if message.is_user and message.content else None


# --- the browser's strings -------------------------------------------------------------------------


def js_strings() -> dict[str, str]:
    """What chat.js writes on the page, in the page's language (keyed by the English text)."""
    english = (
        N_("Please wait for the reply to finish, or stop it, then send again."),
        N_("Edit your message"),
        N_("Send"),
        N_("Cancel"),
        N_("The earlier version is kept (‹ › to switch back)."),
        N_("We couldn't reach the server. Your message is still here: please send it again in a moment."),
        N_("You're offline. Your message is still here: send it again once you're back online."),
        N_("We couldn't reach the server. Please try again in a moment."),
        N_("You're offline. Please try again once you're back online."),
        N_("Connection lost — reconnecting…"),
        N_("We can't reach the server right now. We'll keep trying; or reload the page later."),
        N_("Copied"),
        N_("Couldn't copy"),
        N_("New name for this conversation"),
        N_("Assistant is answering…"),
        N_("The assistant answered:"),
        N_("… (the rest is in the conversation)"),
        N_("The reply ended."),
    )
    return {text: _(text) for text in english}


# --- the switcher ------------------------------------------------------------------------------------


@bp.post("/language")
def choose_language() -> Response:
    """The switcher: remember the language in a cookie (no session needed) and go back."""
    chosen = request.form.get("lang", "")
    if chosen not in LANGUAGES:
        abort(400, description=_("Choose English or Español."))
    return remember(COOKIE, chosen)


def remember(cookie: str, value: str) -> Response:
    """A visitor's choice kept in a cookie for a year (no session needed), then back to the page
    it was made on (the form's ``next``); 204 when the page's script made it in place."""
    if request.headers.get("X-Requested-With") == "fetch":
        response = Response(status=204)
    else:
        response = redirect(_back_to(request.form.get("next", "")), 303)
    response.set_cookie(
        cookie, value, max_age=COOKIE_SECONDS, samesite="Lax", httponly=True, secure=request.is_secure
    )
    return response


def _back_to(target: str) -> str:
    """Where the switcher was used: a path on this site only (never another site's address)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


# --- compiled catalogs ---------------------------------------------------------------------------------


_compiled: dict[tuple[str, float], Translations] = {}
_compiling = threading.Lock()


def _catalogs_from_po(babel: Babel) -> None:
    """A catalog whose compiled ``.mo`` is missing or older than its ``.po`` (a checkout, an edit
    since the last install) is compiled here, in memory: once a process (apps made at once in
    threads share it; CPython 3.11 can fail compiling in several threads at the same time)."""
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue  # (Flask-Babel loads it)
        key = (str(po), po.stat().st_mtime)
        with _compiling:
            if key not in _compiled:
                with po.open("rb") as source:
                    catalog = read_po(source)
                compiled = io.BytesIO()
                write_mo(compiled, catalog)
                compiled.seek(0)
                _compiled[key] = Translations(compiled, domain="messages")
                log.debug("compiled the %s catalog from %s", po.parent.parent.name, po)
        babel.domain_instance.cache[po.parent.parent.name, "messages"] = _compiled[key]


def init_app(app: Flask) -> None:
    babel = Babel(app, locale_selector=select_locale, default_domain="messages")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda text: _translations().ugettext(text),
        ngettext=lambda singular, plural, n: _translations().ungettext(singular, plural, n),
        newstyle=True,
    )
    with app.app_context():
        _catalogs_from_po(babel)
    app.register_blueprint(bp)

    @app.context_processor
    def languages() -> dict[str, Any]:
        return {
            "page_language": language(),
            "languages": LANGUAGES,
            "js_strings": js_strings,
            "message_lang": message_lang,
        }

    @app.after_request
    def vary_by_language(response: Response) -> Response:
        """A page's words follow Accept-Language (and the cookie, already in Vary: Cookie)."""
        if response.mimetype == "text/html":
            response.vary.add("Accept-Language")
        return response

    app.add_template_filter(ago, "ago")
    app.add_template_filter(day_label, "day_label")
    app.add_template_filter(local_day, "local_day")
    app.add_template_filter(clock, "clock")
