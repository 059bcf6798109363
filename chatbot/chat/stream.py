"""The stream's framing: server-sent events carrying HTML for htmx 4's ``sse`` extension.

Each unnamed event's ``data:`` lines are joined and swapped like a normal response; a named event
fires as a DOM event on the form; a comment line (``: keep-alive``) costs nothing to the page but
tells the server whether the client is still there.
"""

from __future__ import annotations

from ..rendering import Update

KEEPALIVE = ": keep-alive\n\n"


def event(html: str, name: str | None = None) -> str:
    """One server-sent event; each line of ``html`` becomes a ``data:`` line."""
    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"event: {name}\n" if name else ""
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


def markdown_update(tail_id: str, update: Update) -> str:
    """A batch of a reply being written (``rendering.StreamingMarkdown``): its finished blocks go in
    before the open tail ``tail_id``, and the tail's content is replaced, in one event (so both land
    before the page is painted again: no frame shows a block twice). A keep-alive when nothing on
    screen changes (text held back until the next batch), so a departed client is still noticed."""
    parts = []
    if update.done:
        parts.append(f'<hx-partial hx-target="#{tail_id}" hx-swap="beforebegin">{update.done}</hx-partial>')
    if update.tail is not None:
        parts.append(f'<hx-partial hx-target="#{tail_id}" hx-swap="innerHTML">{update.tail}</hx-partial>')
    return event("".join(parts)) if parts else KEEPALIVE
