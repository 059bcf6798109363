"""``flask conversations …`` (list, show, export and reset saved conversations), ``flask check``
and ``flask sweep``."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import openai
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .chat import export, outcomes, queries
from .chat.conversations import delete_conversations
from .chat.replies import sweep
from .config import Defaults
from .database import current_revision, head_revision
from .extensions import db
from .llm import get_provider
from .llm.openai_provider import explain_failure
from .models import utcnow

conversations = AppGroup("conversations", help="List, show, export and reset saved conversations.")

_AGE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def printable(text: str) -> str:
    """User text made safe for a terminal: control, escape, format (bidi) characters dropped."""
    return "".join(ch for ch in text if ch == " " or unicodedata.category(ch)[0] not in ("C", "Z"))


def parse_age(text: str) -> timedelta:
    """'30d' -> 30 days; units m(inutes), h(ours), d(ays), w(eeks)."""
    match = _AGE.match(text or "")
    if not match:
        raise click.BadParameter("use a number and a unit, like 30d, 12h, 2w or 90m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@conversations.command("list")
def list_command() -> None:
    """Every conversation: id, messages, last update, outcome, title (newest first)."""
    rows = queries.conversations_with_counts()
    if not rows:
        click.echo("No conversations.")
        return
    click.echo(f"{'ID':<14} {'MESSAGES':>8}  {'UPDATED (UTC)':<16}  {'OUTCOME':<10}  TITLE")
    for conversation, n in rows:
        updated = conversation.updated_at.strftime("%Y-%m-%d %H:%M")
        state = conversation.outcome or "open"
        title = printable(conversation.title)
        click.echo(f"{conversation.public_id:<14} {n:>8}  {updated:<16}  {state:<10}  {title}")


@conversations.command("outcomes")
@click.option("--since", metavar="AGE", help="Only conversations started within AGE (e.g. 7d, 24h).")
def outcomes_command(since: str | None) -> None:
    """How conversations ended. Only a customer's own "yes, it solved it" counts as resolved."""
    start = utcnow() - parse_age(since) if since else None
    report = outcomes.summary(start)
    for name, count in report.by_outcome.items():
        click.echo(f"{name:<11} {count:>7}")
    resolved = report.by_outcome["resolved"]
    click.echo(f"confirmed resolved: {resolved} of {report.total} ({report.resolution_rate:.0%})")


@conversations.command("settle")
def settle_command() -> None:
    """Mark abandoned the open conversations idle for ABANDONED_AFTER_MINUTES (the app does it too)."""
    minutes = float(current_app.config["ABANDONED_AFTER_MINUTES"])
    if minutes <= 0:
        raise click.ClickException("ABANDONED_AFTER_MINUTES is 0: conversations are never marked abandoned")
    settled = outcomes.settle(utcnow(), timedelta(minutes=minutes))
    click.echo(f"{settled} conversation(s) marked abandoned (idle for {minutes:g} minutes)")


@conversations.command("reset")
@click.option("--all", "everything", is_flag=True, help="Remove every conversation.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Remove this conversation (repeatable).")
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Remove conversations not updated for AGE (e.g. 30d, 12h, 2w).",
)
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
def reset_command(everything: bool, ids: tuple[str, ...], older_than: str | None, yes: bool) -> None:
    """Remove conversations and their messages."""
    chosen = sum([everything, bool(ids), older_than is not None])
    if chosen != 1:
        raise click.UsageError("choose exactly one of --all, --id ID or --older-than AGE")
    if ids:
        targets = [c for c, _ in queries.conversations_with_counts() if c.public_id in ids]
        missing = sorted(set(ids) - {c.public_id for c in targets})
        if missing:
            raise click.ClickException(f"no conversation with id {', '.join(missing)}")
        what = f"conversation {', '.join(ids)}"
    elif older_than is not None:
        age = parse_age(older_than)
        targets = [c for c, _ in queries.conversations_with_counts(updated_before=utcnow() - age)]
        what = f"conversations not updated for {older_than.strip()}"
    else:
        if not yes:
            click.confirm("Remove every conversation and all their messages?", abort=True)
        targets = [c for c, _ in queries.conversations_with_counts()]
        what = "every conversation"
    # (the same service function as the delete button)
    n, n_messages = delete_conversations([c.id for c in targets])
    click.echo(f"Removed {n} conversation(s) and {n_messages} message(s): {what}.")


def _found(public_ids: tuple[str, ...]) -> list[export.ConversationInfo]:
    infos, missing = export.find_by_public_ids(public_ids)
    if missing:
        raise click.ClickException(f"no conversation with id {', '.join(printable(m) for m in missing)}")
    return infos


def _indented(text: str) -> Iterator[str]:
    """A message's text for a terminal: each line made printable and indented, so no line of it
    can pass for the transcript's own header lines."""
    if text:
        for line in text.split("\n"):
            yield ("    " + "    ".join(printable(part) for part in line.split("\t"))).rstrip()


@conversations.command("show")
@click.argument("public_id", metavar="ID")
def show_command(public_id: str) -> None:
    """The transcript of conversation ID (as `list` shows it): the messages it shows, in order.
    An ID that starts with '-' goes after '--': `flask conversations show -- -AbC`."""
    (info,) = _found((public_id,))
    click.echo(printable(info.title))
    started, updated = export.iso(info.created_at), export.iso(info.updated_at)
    click.echo(f"{info.public_id}, started {started}, updated {updated}")
    for message in export.shown_messages(info.id):
        click.echo(f"\n{'You' if message.is_user else 'Assistant'} · {export.iso(message.timestamp)}")
        for line in _indented(message.content):
            click.echo(line)
        if (notice := export.status_line(message)) is not None:
            click.echo(f"    [{printable(notice)}]")


@conversations.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(export.FORMATS),
    default="jsonl",
    show_default=True,
    help="jsonl: OpenAI chat fine-tuning examples, one conversation a line (those with an answer "
    "to learn from); json: an array of conversations with every message and its metadata; "
    "md: Markdown transcripts, one after another.",
)
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this conversation (repeatable).")
@click.option(
    "--out",
    default="-",
    metavar="FILE",
    help="Write to FILE (replaced once the export is whole) instead of standard output ('-').",
)
def export_command(fmt: str, ids: tuple[str, ...], out: str) -> None:
    """Export conversations (all, or each --id) as JSONL, JSON or Markdown."""
    infos = _found(ids) if ids else export.conversations()
    tally = export.Tally()
    try:
        with click.open_file(out, "w", encoding="utf-8", atomic=out != "-") as f:
            for chunk in export.export(fmt, infos, current_app.config["SYSTEM_PROMPT"], tally):
                f.write(chunk)
    except BrokenPipeError:
        if out != "-":
            raise click.ClickException(f"can't write {out}: the pipe was closed") from None
        raise SystemExit(1) from None  # (a reader such as `head` had enough: no message)
    except OSError as exc:
        raise click.ClickException(f"can't write {out}: {exc.strerror or exc}") from None
    where = "standard output" if out == "-" else out
    if fmt == "jsonl":
        left = tally.conversations - tally.written
        note = f" ({left} without an answer to learn from left out)" if left else ""
        click.echo(f"Exported {tally.written} conversation(s) to {where}{note}.", err=True)
    else:
        click.echo(f"Exported {tally.conversations} conversation(s) to {where}.", err=True)


SECRETS = ("SECRET_KEY", "OPENAI_API_KEY")
URLS = (
    "SQLALCHEMY_DATABASE_URI",
    "REDIS_URL",
    "RATELIMIT_STORAGE_URI",
    "OPENAI_BASE_URL",
)  # may hold a password


def masked_url(url: str) -> str:
    """A URL without its password or query string (either may hold a secret)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def _shown(key: str, value: Any) -> str:
    if key in SECRETS:
        return "set" if value else "not set"
    if key in URLS and value:
        return masked_url(str(value))
    return repr(value)


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Print the effective configuration (secrets masked), then test the database, the model's
    server and Redis (when configured). Exits non-zero on any problem."""
    app = current_app
    keys = sorted({*vars(Defaults), *URLS} - {"SQLALCHEMY_ENGINE_OPTIONS"})
    click.echo("Configuration:")
    for key in keys:
        if not key.startswith("_"):
            click.echo(f"  {key} = {_shown(key, app.config.get(key))}")
    problems = [problem for problem in (_check_database(), _check_model(), _check_redis()) if problem]
    click.echo("All good." if not problems else f"{len(problems)} problem(s).")
    if problems:
        raise SystemExit(1)


def _report(what: str, problem: str | None, ok: str = "ok") -> str | None:
    click.echo(f"{what}: {ok if problem is None else 'PROBLEM: ' + problem}")
    return problem


def _check_database() -> str | None:
    try:
        with db.engine.connect() as conn:
            revision = current_revision(conn)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return _report("database", f"can't connect ({type(exc).__name__}: {exc})")
    if revision != head_revision():
        return _report("database", f"schema at {revision}, not {head_revision()}: run flask db upgrade")
    return _report("database", None, f"ok, schema at {revision}")


def _check_model() -> str | None:
    provider = get_provider(current_app)
    if provider.name != "openai":
        return _report("model", None, f"ok, the {provider.label} answers (no API key set)")
    client = provider.client.with_options(timeout=10.0, max_retries=0)  # type: ignore[attr-defined]
    try:
        client.models.list()
    except openai.NotFoundError:
        pass  # some OpenAI-compatible servers have no /models: reachable is enough
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        where = masked_url(str(client.base_url))
        return _report("model", f"{provider.model} at {where}: {explain_failure(exc).detail}")
    return _report("model", None, f"ok, {provider.model} at {masked_url(str(client.base_url))}")


def _check_redis() -> str | None:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return _report("redis", f"{_shown('REDIS_URL', url)}: {type(exc).__name__}")
    return _report("redis", None)


@click.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Mark replies nobody is writing any more (their worker died: the lease ran out) as
    interrupted, so they offer Retry. The server runs it as it starts (gunicorn.conf.py)."""
    left = sweep()
    click.echo(f"marked {left} unfinished repl{'y' if left == 1 else 'ies'} as interrupted")


def init_app(app: Flask) -> None:
    app.cli.add_command(conversations)
    app.cli.add_command(check_command)
    app.cli.add_command(sweep_command)
