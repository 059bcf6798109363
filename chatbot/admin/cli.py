"""``flask admin …``: the admin accounts (the admin area is off until one exists).

Passwords come from a hidden prompt (asked twice) or, for scripts, the first line of standard
input (``--password-stdin``); never from an argument (it would show in ``ps`` and the shell's
history), and never echoed or logged.
"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..models import utcnow
from . import accounts
from .audit import audit

admin_cli = AppGroup("admin", help="Admin accounts for /admin (off until one exists).")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat it")
    return password


_password_option = click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of a prompt.",
)


@admin_cli.command("create-user")
@click.argument("name")
@_password_option
def create_user_command(name: str, password_stdin: bool) -> None:
    """Make an admin account NAME (a password of at least 12 characters)."""
    try:
        accounts.check_name(name)
        if accounts.find(name) is not None:
            raise accounts.AccountError(f"there is already an admin account named {name!r}")
        accounts.create_user(name, _password(password_stdin))
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    audit("user_created", name=name, via="cli")
    click.echo(f"Admin account {name!r} created. Sign in at /admin/login.")


@admin_cli.command("set-password")
@click.argument("name")
@_password_option
def set_password_command(name: str, password_stdin: bool) -> None:
    """Give NAME a new password (signs out every browser signed in as NAME, ends a lockout)."""
    try:
        if accounts.find(name) is None:
            raise accounts.AccountError(f"there is no admin account named {name!r}")
        accounts.set_password(name, _password(password_stdin))
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    audit("password_set", name=name, via="cli")
    click.echo(f"New password set for {name!r}; its sessions have ended.")


@admin_cli.command("delete-user")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
def delete_user_command(name: str, yes: bool) -> None:
    """Remove the admin account NAME (and sign it out everywhere)."""
    if accounts.find(name) is None:
        raise click.ClickException(f"there is no admin account named {name!r}")
    if not yes:
        click.confirm(f"Remove the admin account {name!r}?", abort=True)
    accounts.delete_user(name)
    audit("user_deleted", name=name, via="cli")
    left = len(accounts.list_users())
    note = "" if left else " No admin account is left: /admin is off."
    click.echo(f"Admin account {name!r} removed.{note}")


@admin_cli.command("list-users")
def list_users_command() -> None:
    """Every admin account: when it was made, its last sign-in, whether it is locked."""
    users = accounts.list_users()
    if not users:
        click.echo("No admin accounts (/admin is off). Make one with: flask admin create-user NAME")
        return
    now = utcnow()
    for user in users:
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        locked = (
            f", locked until {user.locked_until.isoformat(timespec='seconds')}"
            if user.locked_until and user.locked_until > now
            else ""
        )
        made = user.created_at.isoformat(timespec="seconds")
        click.echo(f"{user.name}  created {made}, last sign-in {last}{locked}")
