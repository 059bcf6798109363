"""``flask conversations …``: list and reset saved conversations."""

from __future__ import annotations

import re
from datetime import timedelta

import click
from flask import Flask
from flask.cli import AppGroup

from .chat import queries
from .chat.conversations import delete_conversations
from .models import utcnow

conversations = AppGroup("conversations", help="List and reset saved conversations.")

_AGE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'30d' -> 30 days; units m(inutes), h(ours), d(ays), w(eeks)."""
    match = _AGE.match(text or "")
    if not match:
        raise click.BadParameter("use a number and a unit, like 30d, 12h, 2w or 90m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@conversations.command("list")
def list_command() -> None:
    """Every conversation: id, title, messages, last update (newest first)."""
    rows = queries.conversations_with_counts()
    if not rows:
        click.echo("No conversations.")
        return
    click.echo(f"{'ID':<14} {'MESSAGES':>8}  {'UPDATED (UTC)':<16}  TITLE")
    for conversation, n in rows:
        updated = conversation.updated_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{conversation.public_id:<14} {n:>8}  {updated:<16}  {conversation.title}")


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
    n, n_messages = delete_conversations([c.id for c in targets])
    click.echo(f"Removed {n} conversation(s) and {n_messages} message(s): {what}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(conversations)
