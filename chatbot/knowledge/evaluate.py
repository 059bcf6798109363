"""``flask assistant eval FILE``: how well the assistant answers a set of questions.

Each line of the file is ``{"question": ..., "lang": "en"|"es", "topic": ...}`` (``topic`` names
the expected article's topic or its address; ``"article"`` may be used instead). Every question
goes through the same steps as a turn (the look-up, then the assistant), and the report says:

- retrieval hit rate at 1 and at 3: the expected article is the first found / among the first 3;
- answers on topic: the answer cites the expected article, or, searched in the articles itself,
  finds it among the first 3 (so a model's answer that cites nothing is judged by what it says);
- answers in the customer's language;
- latency of the answers (median and 95th percentile), and of retrieval alone;
- the tokens the answers took, as the model reported them (``Result.prompt_tokens`` /
  ``completion_tokens``: None when it reported none, as the offline assistant).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ..language import detect, language
from ..llm import Provider, ProviderError, Text, Usage
from .briefing import brief
from .retrieve import Source, retrieve


class EvalFileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Case:
    line: int
    question: str
    lang: str
    expected: str  # a topic or an article's address


@dataclass(slots=True)
class Result:
    case: Case
    found: list[str]  # the addresses of the articles retrieved, best first
    hit1: bool
    hit3: bool
    answer: str = ""
    on_topic: bool = False
    right_language: bool = False
    retrieval_ms: float = 0.0
    answer_ms: float = 0.0
    error: str | None = None
    prompt_tokens: int | None = None  # as the model reported them (None: not reported)
    completion_tokens: int | None = None


@dataclass(slots=True)
class Report:
    results: list[Result] = field(default_factory=list)

    def rate(self, attribute: str) -> float:
        return (
            sum(bool(getattr(r, attribute)) for r in self.results) / len(self.results)
            if self.results
            else 0.0
        )

    def millis(self, attribute: str, q: float) -> float:
        values: list[float] = sorted(float(getattr(r, attribute)) for r in self.results)
        if not values:
            return 0.0
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]

    def tokens(self, attribute: str) -> int | None:
        """The tokens of all answers (``prompt_tokens`` or ``completion_tokens``); None when the
        model reported none."""
        values = [getattr(r, attribute) for r in self.results if getattr(r, attribute) is not None]
        return sum(values) if values else None

    def figures(self) -> dict[str, float]:
        return {
            "hit1": self.rate("hit1"),
            "hit3": self.rate("hit3"),
            "on_topic": self.rate("on_topic"),
            "language": self.rate("right_language"),
        }


def read_cases(path: Path) -> list[Case]:
    cases = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalFileError(f"line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise EvalFileError(f"line {n}: expected an object")
            question, lang = row.get("question"), row.get("lang")
            expected = row.get("topic") or row.get("article")
            if not isinstance(question, str) or not question.strip():
                raise EvalFileError(f"line {n}: 'question' must be a non-empty string")
            if lang not in ("en", "es"):
                raise EvalFileError(f"line {n}: 'lang' must be en or es")
            if not isinstance(expected, str) or not expected:
                raise EvalFileError(f"line {n}: name the expected 'topic' (or 'article')")
            cases.append(Case(n, question.strip(), lang, expected))
    if not cases:
        raise EvalFileError("no questions in the file")
    return cases


def _matches(source: Source, expected: str) -> bool:
    return expected in (source.topic, source.slug)


def _ask(provider: Provider, messages: list[dict[str, str]], briefing: Any, result: Result) -> str:
    """The answer's text; the tokens it took go on ``result`` when the model reports them."""
    reply = provider.stream(messages, briefing)
    reply.at_once()
    texts = []
    try:
        for event in reply:
            if isinstance(event, Text):
                texts.append(event.text)
            elif isinstance(event, Usage):
                result.prompt_tokens = event.prompt_tokens
                result.completion_tokens = event.completion_tokens
        return "".join(texts)
    finally:
        reply.close()


def evaluate(
    conn: Connection,
    cases: Iterable[Case],
    provider: Provider,
    *,
    system_prompt: str,
    articles: int = 3,
    contact: tuple[tuple[str, str], ...] = (),
    answers: bool = True,
    clock: Any = time.perf_counter,
) -> Report:
    report = Report()
    for case in cases:
        started = clock()
        found = retrieve(conn, case.question, limit=3)
        retrieval_ms = (clock() - started) * 1000
        addresses = [s.slug for s in found.sources]
        result = Result(
            case,
            addresses,
            hit1=bool(found.sources) and _matches(found.sources[0], case.expected),
            hit3=any(_matches(s, case.expected) for s in found.sources[:3]),
            retrieval_ms=retrieval_ms,
        )
        if answers:
            messages = [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": case.question},
            ]
            started = clock()
            try:
                messages, briefing = brief(conn, messages, articles=articles, contact=contact)
                result.answer = _ask(provider, messages, briefing, result)
            except ProviderError as exc:
                result.error = exc.detail
            result.answer_ms = (clock() - started) * 1000
            if result.answer:
                back = retrieve(conn, result.answer, limit=3).sources
                result.on_topic = _cites(result.answer, briefing.sources, case.expected) or any(
                    _matches(s, case.expected) for s in back
                )
                result.right_language = (detect(result.answer) or language(result.answer)) == case.lang
        report.results.append(result)
    return report


def _cites(answer: str, sources: Sequence[Source], expected: str) -> bool:
    """The answer cites ([n]) the expected article among those it was given."""
    return any(f"[{n}]" in answer and _matches(s, expected) for n, s in enumerate(sources, 1))


def lines(report: Report, *, answers: bool, verbose: bool = False) -> list[str]:
    """The report as the command prints it."""
    results = report.results
    langs = {lang: sum(r.case.lang == lang for r in results) for lang in ("en", "es")}
    out = [f"questions: {len(results)} ({langs['en']} en, {langs['es']} es)"]
    if verbose:
        for r in results:
            mark = "ok " if r.hit1 else ("3rd" if r.hit3 else "MISS")
            out.append(
                f"  {mark} line {r.case.line}: {r.case.expected:<16} <- {r.found[:3]} {r.case.question!r}"
            )
            if answers and (not r.on_topic or not r.right_language):
                out.append(
                    f"      answer (on topic: {r.on_topic}, language: {r.right_language}): {r.answer[:160]!r}"
                )
    out.append(f"retrieval hit rate: @1 {report.rate('hit1'):.2f}  @3 {report.rate('hit3'):.2f}")
    p50, p95 = report.millis("retrieval_ms", 0.5), report.millis("retrieval_ms", 0.95)
    out.append(f"retrieval latency: p50 {p50:.1f} ms  p95 {p95:.1f} ms")
    if answers:
        errors = sum(r.error is not None for r in results)
        out.append(f"answers on topic: {report.rate('on_topic'):.2f}")
        out.append(f"answers in the customer's language: {report.rate('right_language'):.2f}")
        p50, p95 = report.millis("answer_ms", 0.5), report.millis("answer_ms", 0.95)
        failed = f"  ({errors} failed)" if errors else ""
        out.append(f"answer latency: p50 {p50:.1f} ms  p95 {p95:.1f} ms{failed}")
    return out
