"""The provider interface: one small protocol every assistant backend speaks.

A provider turns wire-format chat messages (``{"role": ..., "content": ...}`` dicts) into a
``ReplyStream``: an iterator of events (``Text``, ``Usage``, ``Finish``) with a ``close()`` that may
be called from another thread to stop the backend early, and a ``pace()`` that says how often
its reader wants text. Errors before or during the reply are
raised as ``ProviderError`` with a short, plain reason a user may read (no keys, no tracebacks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


def estimate_tokens(text: str) -> int:
    """A cheap, deliberately generous token estimate (about 3 characters a token, plus framing)."""
    return len(text) // 3 + 4


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something a backend says about its answer, kept in the reply's metadata (the offline
    assistant says what it answered from: ``Note("answered_from", "article")``)."""

    key: str
    value: Any


Event = Text | Usage | Finish | Note


@dataclass(frozen=True, slots=True)
class Briefing:
    """What the turn found out about the question before asking (``knowledge/briefing.py``): what
    kind of message it is, its language, the shop's articles that answer it and how to reach a
    person. The messages a provider gets already tell a model all this; a backend that reads no
    prose (the offline assistant) reads it here."""

    intent: str = "question"
    lang: str | None = None
    sources: tuple[Any, ...] = ()  # knowledge.retrieve.Source, best first
    confident: bool = False  # the best source answers the question (not merely mentions it)
    follow_up: bool = False  # the question was read with the one before it
    coverage: float = 0.0  # how much of the question the best article holds (0: nothing known)
    topical: bool = False  # it names something the articles are about (not "a recipe for paella")
    contact: tuple[
        tuple[str, str], ...
    ] = ()  # ("phone", "+34 900 …"), ("email", …), ("hours", …), ("url", …)


class ProviderError(Exception):
    """A model call failed.

    ``reason`` is written for the customer: what happened in plain words and what to do, never an
    HTTP code or a hint about keys. ``detail`` is for the operator (the log and the reply's
    metadata). ``retryable`` says whether trying again can help (not for a refused key, nor for a
    conversation too long for the model). ``kind`` names the failure for metadata and logs."""

    def __init__(
        self, reason: str, kind: str = "error", *, detail: str | None = None, retryable: bool = True
    ):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.detail = detail or reason
        self.retryable = retryable


class ReplyStream(Protocol):
    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...

    def pace(self, seconds: float) -> None:
        """Read the backend no more often than every ``seconds`` from now on (its text is sent on
        in batches that often anyway); a backend with nothing to read may ignore it."""

    def at_once(self) -> None:
        """Nobody watches the text arrive (a page without JavaScript waits for the whole reply):
        a backend that spaces its text out for show may hand it over at once."""


class Provider(Protocol):
    name: str  # "openai" | "offline"
    model: str  # what is stored in metadata
    label: str  # what the page shows

    def stream(self, messages: list[dict[str, Any]], briefing: Briefing | None = None) -> ReplyStream: ...
