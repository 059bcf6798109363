"""The dashboard page (``/admin/dashboard``): the figures of ``dashboard.py`` for a date range,
three small charts and the questions that went unanswered. On the admin blueprint, so behind its
guard like every admin page."""

from __future__ import annotations

from flask import current_app, render_template, request

from ..i18n import _, _l
from . import charts, signin
from .dashboard import BadRange, Dashboard, figures, parse_range, unanswered
from .views import bp

REASONS = {
    "thumbs_down": _l("Thumbs down"),
    "off_topic": _l("Off topic"),
    "fallback": _l("No answer found"),
    "unresolved": _l("Not resolved"),
    "escalated": _l("Asked for a person"),
}


def reason_label(reason: str) -> str:
    return str(REASONS.get(reason, reason))


def _charts(board: Dashboard) -> list[charts.Chart]:
    days = list(board.days)
    labels = [d.isoformat() for d in days]
    rows = [board.days[d] for d in days]
    conversations = charts.bars(
        "chart-conversations",
        _("Conversations per day"),
        _(
            "Bars: conversations started each day, from %(first)s to %(last)s. "
            "The figures are in the table below.",
            first=labels[0],
            last=labels[-1],
        ),
        labels,
        [row.conversations for row in rows],
    )
    rates = charts.lines(
        "chart-resolution",
        _("Confirmed resolution rate per day"),
        _(
            "Line: the share of each day's conversations the customer confirmed as resolved, "
            "0 to 100 percent; days without conversations are gaps. The figures are in the table below."
        ),
        labels,
        [("chart-line", [None if r.resolution_rate is None else r.resolution_rate * 100 for r in rows])],
        top=100,
        top_label="100%",
    )
    ttft = charts.lines(
        "chart-ttft",
        _("Time to first token per day (ms)"),
        _(
            "Two lines: the median (p50, solid) and the 95th percentile (p95, dashed) time to the first "
            "token of each day's replies, in milliseconds. The figures are in the table below."
        ),
        labels,
        [
            ("chart-line", [r.ttft_p50 for r in rows]),
            ("chart-line chart-line--dashed", [r.ttft_p95 for r in rows]),
        ],
    )
    return [conversations, rates, ttft]


@bp.get("/dashboard")
def dashboard() -> tuple[str, int] | str:
    admin = signin.current()
    try:
        span = parse_range(request.args.get("from"), request.args.get("to"))
    except BadRange as exc:
        error = _(
            "Those dates can't be shown (%(problem)s). Use dates like 2025-01-31, from no later than to.",
            problem=str(exc),
        )
        return render_template(
            "admin/dashboard.html",
            admin=admin,
            error=error,
            first=request.args.get("from", ""),
            last=request.args.get("to", ""),
        ), 400
    board = figures(span, current_app.config["MODEL_PRICES"])
    return render_template(
        "admin/dashboard.html",
        admin=admin,
        board=board,
        charts=_charts(board),
        questions=unanswered(span),
        reason_label=reason_label,
        first=span.first.isoformat(),
        last=span.last.isoformat(),
    )
