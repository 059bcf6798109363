"""The checks OpenAI documents for chat fine-tuning data, with statistics and a cost estimate.

Plain Python: ``flask finetune validate`` prints the report, and ``flask finetune start`` will
refuse a file whose report has errors. The checks follow OpenAI's fine-tuning guide and its
"data preparation and analysis for chat model fine-tuning" cookbook:

- each line is valid JSON, an object holding ``messages`` (a non-empty list) and nothing else;
- each message is an object with a ``role`` and a ``content``, and no keys but ``role``,
  ``content``, ``name`` (a string) and ``weight`` (0 or 1, on assistant messages only);
- the role is ``system``, ``user`` or ``assistant``. ``tool`` and ``function`` messages (and
  ``tool_calls`` / ``function_call``) are rejected: this app trains a chat assistant, and such
  examples would also need the tools' definitions, which ``prepare`` never writes;
- the content is a string with something in it;
- each example has at least one assistant message, and the file at least ``MIN_EXAMPLES``;
- each example fits the model's per-example token limit (``token_limit``).

Tokens are counted with ``tiktoken`` when it is installed, else estimated (``count_tokens``).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import median
from typing import Any

DEFAULT_MODEL = "gpt-4.1-nano-2025-04-14"
MIN_EXAMPLES = 10  # OpenAI refuses a training file with fewer

# The most tokens one training example may hold, by model family (OpenAI's fine-tuning guide:
# gpt-4.1-nano, gpt-4.1-mini, gpt-4.1, gpt-4o and gpt-4o-mini take 65,536 per example;
# gpt-3.5-turbo 16,385). Longer examples are cut to the limit when training.
TOKEN_LIMIT = 65_536
TOKEN_LIMITS = {"gpt-3.5-turbo": 16_385}

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = ("role", "content", "name", "weight")

# Without tiktoken: about 4 characters a token (OpenAI's rule of thumb for English; Spanish runs a
# little higher), plus the few tokens that frame each message and the whole example.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_EXAMPLE = 3

# OpenAI's "auto" epochs, as its cookbook estimates them: 3, or more for small files (at least
# ~100 example passes in all), fewer for huge ones, between 1 and 25.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_EPOCHS, MAX_EPOCHS = 1, 25


def token_limit(model: str) -> int:
    """The per-example token limit for this model (or a fine-tuned model built on it)."""
    base = model.removeprefix("ft:")
    for prefix, limit in TOKEN_LIMITS.items():
        if base.startswith(prefix):
            return limit
    return TOKEN_LIMIT


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int] | None:
    """tiktoken's o200k_base (the gpt-4o and gpt-4.1 tokenizer) when it is installed and its
    tables can be loaded, else None (the estimate is used)."""
    try:
        tiktoken = importlib.import_module("tiktoken")
        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - not installed, or its tables can't be fetched: estimate
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def tokenizer_name() -> str:
    return "tiktoken o200k_base" if _encoder() is not None else f"estimate (~{CHARS_PER_TOKEN} chars a token)"


def count_tokens(messages: list[dict[str, Any]]) -> int:
    """The tokens an example holds: each message's text plus its framing."""
    encode = _encoder() or (lambda text: math.ceil(len(text) / CHARS_PER_TOKEN))
    total = TOKENS_PER_EXAMPLE
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = message.get(key)
            if isinstance(value, str):
                total += encode(value)
    return total


def auto_epochs(examples: int) -> int:
    """The epochs OpenAI's "auto" would likely pick for this many examples (an estimate)."""
    if examples <= 0:
        return TARGET_EPOCHS
    if examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    if examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return TARGET_EPOCHS


@dataclass(frozen=True, slots=True)
class Problem:
    """One error: the line it is on (0: the file as a whole) and what is wrong."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class Report:
    """What ``validate_lines`` found: the errors, and figures about the examples that parsed."""

    model: str
    token_limit: int
    epochs: int  # as asked, or OpenAI's "auto" estimate
    epochs_estimated: bool
    errors: list[Problem] = field(default_factory=list)
    messages_per_example: list[int] = field(default_factory=list)
    tokens_per_example: list[int] = field(default_factory=list)
    missing_assistant: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def examples(self) -> int:
        return len(self.tokens_per_example)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens_per_example)

    @property
    def over_limit(self) -> int:
        return sum(1 for n in self.tokens_per_example if n > self.token_limit)

    @property
    def billable_tokens(self) -> int:
        """Tokens trained on (each example capped at the limit, as training cuts it) x epochs."""
        return sum(min(n, self.token_limit) for n in self.tokens_per_example) * self.epochs

    def lines(self) -> list[str]:
        """The statistics, as ``flask finetune validate`` prints them."""
        out = [f"examples: {self.examples}"]
        if self.examples:
            out.append(f"messages per example: {_spread(self.messages_per_example)}")
            out.append(f"tokens per example: {_spread(self.tokens_per_example)} ({tokenizer_name()})")
        out += [
            f"total tokens: {self.total_tokens}",
            f"examples over the {self.token_limit}-token limit of {self.model}: {self.over_limit}",
            f"examples without an assistant message: {self.missing_assistant}",
            f"epochs: {self.epochs}"
            + (" (OpenAI's 'auto' would likely choose this)" if self.epochs_estimated else ""),
            f"estimated billable training tokens: {self.billable_tokens}"
            f" (an estimate: tokens per example, capped at the limit, x {self.epochs} epochs)",
        ]
        return out


def _spread(values: list[int]) -> str:
    return f"min {min(values)}, median {median(values):g}, max {max(values)}"


def check_example(example: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """What is wrong with one parsed line (empty when nothing), and its messages as far as they
    can be read (for the statistics)."""
    if not isinstance(example, dict):
        return [f"not a JSON object (a {type(example).__name__})"], []
    if "messages" not in example:
        return ['no "messages"'], []
    errors = [f'unknown key "{key}" (only "messages")' for key in example if key != "messages"]
    messages = example["messages"]
    if not isinstance(messages, list) or not messages:
        return [*errors, '"messages" is not a non-empty list'], []
    readable = []
    for i, message in enumerate(messages, 1):
        found = check_message(message)
        errors += [f"message {i}: {error}" for error in found]
        if isinstance(message, dict):
            readable.append(message)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        errors.append("no assistant message")
    return errors, readable


def check_message(message: Any) -> list[str]:
    """What is wrong with one message (empty when nothing)."""
    if not isinstance(message, dict):
        return [f"not a JSON object (a {type(message).__name__})"]
    errors = [f'unknown key "{key}"' for key in message if key not in MESSAGE_KEYS]
    role = message.get("role")
    if "role" not in message:
        errors.append("no role")
    elif role not in ROLES:
        errors.append(f"unknown role {json.dumps(role)} (use {', '.join(ROLES)})")
    content = message.get("content")
    if "content" not in message or content is None:
        errors.append("no content")
    elif not isinstance(content, str):
        errors.append(f"content is not a string (a {type(content).__name__})")
    elif not content.strip():
        errors.append("empty content")
    if "name" in message and not isinstance(message["name"], str):
        errors.append("name is not a string")
    if "weight" in message:
        if message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            errors.append("weight is not 0 or 1")
        elif role != "assistant":
            errors.append("weight on a message that is not the assistant's")
    return errors


def validate_lines(
    lines: Iterable[str | None],
    *,
    model: str = DEFAULT_MODEL,
    epochs: int | None = None,
    min_examples: int = MIN_EXAMPLES,
) -> Report:
    """Check a fine-tuning file's lines (numbered from 1; None: a line that is not UTF-8) and
    gather its statistics. ``min_examples``: fewer is an error (a validation file needs one)."""
    limit = token_limit(model)
    report = Report(model, limit, epochs or TARGET_EPOCHS, epochs is None)
    for number, line in enumerate(lines, 1):
        _check_line(report, number, line)
    if report.examples < min_examples:
        report.errors.append(
            Problem(0, f"{report.examples} examples: a training file needs at least {min_examples}")
        )
    if epochs is None:
        report.epochs = auto_epochs(report.examples)
    return report


def _check_line(report: Report, number: int, line: str | None) -> None:
    if line is None:
        report.errors.append(Problem(number, "not UTF-8 text"))
        return
    if not line.strip():
        report.errors.append(Problem(number, "empty line"))
        return
    try:
        example = json.loads(line)
    except ValueError as exc:
        report.errors.append(Problem(number, f"not valid JSON ({exc})"))
        return
    errors, messages = check_example(example)
    report.errors += [Problem(number, error) for error in errors]
    if not messages:
        return
    tokens = count_tokens(messages)
    report.messages_per_example.append(len(messages))
    report.tokens_per_example.append(tokens)
    if not any(m.get("role") == "assistant" for m in messages):
        report.missing_assistant += 1
    if tokens > report.token_limit:
        report.errors.append(
            Problem(number, f"{tokens} tokens: over the {report.token_limit}-token limit of {report.model}")
        )


def validate_file(
    path: Path, *, model: str = DEFAULT_MODEL, epochs: int | None = None, min_examples: int = MIN_EXAMPLES
) -> Report:
    """``validate_lines`` on a file, read a line at a time (a last line break is not an empty
    line; a line that is not UTF-8 is reported as such)."""
    with path.open("rb") as f:
        return validate_lines(
            (_decoded(raw) for raw in f), model=model, epochs=epochs, min_examples=min_examples
        )


def _decoded(raw: bytes) -> str | None:
    try:
        return raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return None
