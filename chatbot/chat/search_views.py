"""HTTP for the search: the sidebar's list filtered as the customer types (``chat/search.py``)."""

from __future__ import annotations

from flask import render_template, request, session

from . import bp, search
from .views import current_owner, is_htmx

PAGE = 50  # results a request shows; the last row loads the next page as it comes into view
MAX_OFFSET = 10_000  # (an owner has at most MAX_CONVERSATIONS_PER_OWNER, 500 by default)
SHOWN_QUERY_CHARS = 80  # of the query, repeated in "No conversations match …"


@bp.get("/conversations/search")
def search_conversations() -> str:
    """The owner's conversations matching ``q`` (the rows of the list, each with a snippet); an
    empty ``q`` answers an empty partial (the page shows its usual list). Without JavaScript (the
    form submitted, "More results" followed) the same rows come as a page of their own. Always 200: a browser
    without conversations, a query of punctuation or a page past the end finds nothing."""
    q = request.args.get("q", "")[: search.MAX_QUERY_CHARS]  # (all the search reads of it)
    offset = min(max(request.args.get("offset", 0, type=int), 0), MAX_OFFSET)
    searched = bool(q.strip())
    hits = search.search(current_owner(), q, limit=PAGE + 1, offset=offset) if searched else []
    shown = " ".join(q.split())
    return render_template(
        "chat/_search_results.html" if is_htmx() else "chat/search_page.html",
        q=q,
        shown_q=shown if len(shown) <= SHOWN_QUERY_CHARS else shown[:SHOWN_QUERY_CHARS] + "…",
        searched=searched,
        hits=hits[:PAGE],
        next_offset=offset + PAGE if len(hits) > PAGE else None,
        offset=offset,
        current=session.get("current"),
    )
