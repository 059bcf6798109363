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


Event = Text | Usage | Finish


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

    def stream(self, messages: list[dict[str, Any]]) -> ReplyStream: ...
