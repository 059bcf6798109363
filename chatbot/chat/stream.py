"""The stream's framing: server-sent events carrying HTML for htmx 4's ``sse`` extension.

Each unnamed event's ``data:`` lines are joined and swapped like a normal response; a named event
fires as a DOM event on the form; a comment line (``: keep-alive``) costs nothing to the page but
tells the server whether the client is still there.
"""

from __future__ import annotations

from markupsafe import escape

KEEPALIVE = ": keep-alive\n\n"


def event(html: str, name: str | None = None) -> str:
    """One server-sent event; each line of ``html`` becomes a ``data:`` line."""
    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"event: {name}\n" if name else ""
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


def append_text(target_id: str, text: str) -> str:
    """An event that appends escaped ``text`` to the element ``target_id``."""
    return event(f'<hx-partial hx-target="#{target_id}" hx-swap="beforeend">{escape(text)}</hx-partial>')
