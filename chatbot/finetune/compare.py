"""``flask finetune compare``: the knowledge evaluation run against two models, side by side.

Before switching ``CHATBOT_MODEL`` to a fine-tuned model, a shop asks the same questions of the
current model and the new one (``knowledge.evaluate``: the same look-up and briefing as a real
turn) and reads the figures next to each other: answers on topic, in the customer's language,
latency (p50/p95), failed answers and tokens. Retrieval does not depend on the model, so its hit
rates are printed once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from ..knowledge.briefing import contact
from ..knowledge.evaluate import Case, Report, evaluate
from ..llm import Provider, make_provider


def provider_for(config: Mapping[str, Any], model: str) -> Provider:
    """The OpenAI provider, as the app makes it from its config, with this model."""
    return make_provider({**config, "PROVIDER": "openai", "MODEL": model})


def compare(
    conn: Connection,
    cases: Sequence[Case],
    models: Sequence[str],
    config: Mapping[str, Any],
    *,
    provider: Callable[[Mapping[str, Any], str], Provider] = provider_for,
) -> list[tuple[str, Report]]:
    """Each model's evaluation report on the same questions, in the order given."""
    return [
        (
            model,
            evaluate(
                conn,
                cases,
                provider(config, model),
                system_prompt=config["SYSTEM_PROMPT"],
                articles=int(config["RETRIEVAL_ARTICLES"]),
                contact=contact(config),
            ),
        )
        for model in models
    ]


def _tokens(report: Report, attribute: str) -> str:
    total = report.tokens(attribute)
    return "n/a" if total is None else str(total)


ROWS: list[tuple[str, Callable[[Report], str]]] = [
    ("answers on topic", lambda r: f"{r.rate('on_topic'):.2f}"),
    ("in the customer's language", lambda r: f"{r.rate('right_language'):.2f}"),
    ("answer latency p50", lambda r: f"{r.millis('answer_ms', 0.5):.0f} ms"),
    ("answer latency p95", lambda r: f"{r.millis('answer_ms', 0.95):.0f} ms"),
    ("failed answers", lambda r: str(sum(x.error is not None for x in r.results))),
    ("prompt tokens", lambda r: _tokens(r, "prompt_tokens")),
    ("completion tokens", lambda r: _tokens(r, "completion_tokens")),
]


def table(reports: Sequence[tuple[str, Report]]) -> list[str]:
    """The reports side by side: a row per figure, a column per model."""
    if not reports:
        return []
    first = reports[0][1]
    results = first.results
    langs = {lang: sum(r.case.lang == lang for r in results) for lang in ("en", "es")}
    out = [
        f"questions: {len(results)} ({langs['en']} en, {langs['es']} es)",
        f"retrieval hit rate (the same for both): @1 {first.rate('hit1'):.2f}  @3 {first.rate('hit3'):.2f}",
    ]
    label = max(len(name) for name, _ in ROWS)
    cells = [[figure(report) for _, figure in ROWS] for _, report in reports]
    widths = [
        max(len(model), *(len(c) for c in column)) for (model, _), column in zip(reports, cells, strict=True)
    ]
    out.append(
        " " * label + "".join(f"  {model:>{w}}" for (model, _), w in zip(reports, widths, strict=True))
    )
    for i, (name, _) in enumerate(ROWS):
        out.append(
            f"{name:<{label}}"
            + "".join(f"  {column[i]:>{w}}" for column, w in zip(cells, widths, strict=True))
        )
    return out
