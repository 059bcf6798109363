"""``flask conversations …``: list and reset saved conversations."""

from __future__ import annotations

import re
from datetime import timedelta

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import delete, func, select

from .extensions import db
from .models import Conversation, Message, utcnow

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
    counts = (
        select(Message.conversation_id, func.count(Message.id).label("n"))
        .group_by(Message.conversation_id).subquery()
    )
    rows = db.session.execute(
        select(Conversation, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.conversation_id == Conversation.id)
        .order_by(Conversation.updated_at.desc())
    ).all()
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
@click.option("--older-than", "older_than", metavar="AGE",
              help="Remove conversations not updated for AGE (e.g. 30d, 12h, 2w).")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
def reset_command(everything: bool, ids: tuple[str, ...], older_than: str | None, yes: bool) -> None:
    """Remove conversations and their messages."""
    chosen = sum([everything, bool(ids), older_than is not None])
    if chosen != 1:
        raise click.UsageError("choose exactly one of --all, --id ID or --older-than AGE")
    query = select(Conversation.id)
    if ids:
        found = db.session.execute(
            select(Conversation.public_id).where(Conversation.public_id.in_(ids))
        ).scalars().all()
        missing = sorted(set(ids) - set(found))
        if missing:
            raise click.ClickException(f"no conversation with id {', '.join(missing)}")
        query = query.where(Conversation.public_id.in_(ids))
        what = f"conversation {', '.join(ids)}"
    elif older_than is not None:
        age = parse_age(older_than)
        query = query.where(Conversation.updated_at < utcnow() - age)
        what = f"conversations not updated for {older_than.strip()}"
    else:
        what = "every conversation"
        if not yes:
            click.confirm("Remove every conversation and all their messages?", abort=True)
    targets = db.session.execute(query).scalars().all()
    n_messages = db.session.execute(
        select(func.count(Message.id)).where(Message.conversation_id.in_(targets))
    ).scalar_one() if targets else 0
    if targets:
        # Messages go first explicitly: not every database enforces ON DELETE CASCADE.
        db.session.execute(delete(Message).where(Message.conversation_id.in_(targets)))
        db.session.execute(delete(Conversation).where(Conversation.id.in_(targets)))
        db.session.commit()
    click.echo(f"Removed {len(targets)} conversation(s) and {n_messages} message(s): {what}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(conversations)
