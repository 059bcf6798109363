"""Training examples for chat fine-tuning, from the bundled dataset and the saved conversations.

Each example is the configured system prompt and then the turns: for a saved conversation, the
path it shows (``Message.shown``, in id order), each question with its answer when that answer
is complete (``export.chat_example``, the same rule as ``flask conversations export``). On the way:

- the filters (saved conversations only: the dataset is curated and has no ratings or dates);
- personal data masked in user and assistant text (``masking.py``), unless asked not to;
- identical examples (after masking) written once;
- an example over the model's per-example token limit left out (training would cut it).

``write`` streams the examples to a temporary file and replaces the output only when it is
whole; with a validation split, a seeded random choice of the examples goes to a second file.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..chat import export
from ..llm.offline import DATASET
from . import validate
from .masking import Masker

SOURCES = ("dataset", "conversations", "both")

# Why an example was left out (the keys of ``Tally.skipped``, as the report prints them).
NO_ANSWER = "without a complete answer to learn from"
NOT_RATED_UP = "not rated thumbs-up (or rated thumbs-down)"
NOT_OUTCOME = "without the outcome asked for"
TOO_OLD = "started before --since"
DUPLICATE = "duplicates"
TOO_LONG = "over the token limit"
INVALID = "invalid dataset lines"


@dataclass(frozen=True)
class Filters:
    """Which saved conversations make examples (None: any)."""

    feedback: str | None = None  # "up": at least one thumbs-up on its shown answers, no thumbs-down
    outcome: str | None = None  # e.g. "resolved": only conversations that ended so
    since: datetime | None = None  # started at or after this moment (UTC)

    @property
    def any(self) -> bool:
        return self.feedback is not None or self.outcome is not None or self.since is not None


@dataclass
class Tally:
    """How a preparation went: what was read, written, left out (and why) and masked."""

    read: Counter[str] = field(default_factory=Counter)  # "dataset", "conversations"
    skipped: Counter[str] = field(default_factory=Counter)
    masked: Counter[str] = field(default_factory=Counter)
    written: int = 0
    validation: int = 0


# --- reading -------------------------------------------------------------------------------


def dataset_examples(system_prompt: str, tally: Tally, path: Path = DATASET) -> Iterator[dict[str, Any]]:
    """The bundled dataset's examples, each with the configured system prompt in place of its own
    (the model then trains with the prompt it will be served with)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            tally.read["dataset"] += 1
            try:
                messages = export.validate_chat_line(line)
            except export.InvalidChatLine:
                tally.skipped[INVALID] += 1
                continue
            yield export.with_system([m for m in messages if m["role"] != "system"], system_prompt)


def conversation_examples(system_prompt: str, filters: Filters, tally: Tally) -> Iterator[dict[str, Any]]:
    """The saved conversations that pass the filters, as examples (``export.chat_example``)."""
    for info in export.conversations():
        tally.read["conversations"] += 1
        if filters.since is not None and info.created_at < filters.since:
            tally.skipped[TOO_OLD] += 1
            continue
        if filters.outcome is not None and info.outcome != filters.outcome:
            tally.skipped[NOT_OUTCOME] += 1
            continue
        messages = list(export.shown_messages(info.id))
        if filters.feedback is not None and not rated(messages, filters.feedback):
            tally.skipped[NOT_RATED_UP] += 1
            continue
        example = export.chat_example(messages, system_prompt)
        if example is None:
            tally.skipped[NO_ANSWER] += 1
            continue
        yield example


def rated(messages: Iterable[export.ExportedMessage], rating: str) -> bool:
    """Whether the shown answers hold at least one ``rating`` and no other rating: with "up", at
    least one thumbs-up and no thumbs-down (answers set aside by an edit or a regeneration are
    not in the example, and don't count)."""
    ratings = set()
    for message in messages:
        feedback = message.meta.get("feedback")
        if not message.is_user and isinstance(feedback, dict):
            ratings.add(feedback.get("rating"))
    return rating in ratings and ratings <= {rating}


# --- shaping -------------------------------------------------------------------------------


def masked(example: dict[str, Any], masker: Masker) -> dict[str, Any]:
    """The example with personal data masked in the customer's and the assistant's text (the
    system prompt is the shop's and is kept)."""
    return {
        "messages": [
            m if m["role"] == "system" else {**m, "content": masker.mask(m["content"])}
            for m in example["messages"]
        ]
    }


def examples(
    source: str,
    *,
    system_prompt: str,
    filters: Filters,
    masker: Masker | None,
    tally: Tally,
    model: str = validate.DEFAULT_MODEL,
) -> Iterator[str]:
    """The JSONL lines to train on: read, masked, de-duplicated and within the token limit."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    found: Iterator[dict[str, Any]] = iter(())
    for read in ("dataset", "conversations"):
        if source in (read, "both"):
            tally.read[read] += 0  # (reported, even when there is nothing to read)
    if source in ("dataset", "both"):
        found = dataset_examples(system_prompt, tally)
    if source in ("conversations", "both"):
        found = _chain(found, conversation_examples(system_prompt, filters, tally))
    limit = validate.token_limit(model)
    seen: set[bytes] = set()
    for example in found:
        if masker is not None:
            example = masked(example, masker)
        masks = masker.take() if masker is not None else Counter[str]()
        line = export.dumps(example)
        digest = hashlib.sha256(line.encode()).digest()  # (a hash a line: no example kept twice)
        if digest in seen:
            tally.skipped[DUPLICATE] += 1
            continue
        seen.add(digest)
        if validate.count_tokens(example["messages"]) > limit:
            tally.skipped[TOO_LONG] += 1
            continue
        tally.masked.update(masks)  # (what the written examples had masked)
        yield line


def _chain(*parts: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for part in parts:
        yield from part


# --- writing -------------------------------------------------------------------------------


def validation_path(out: Path) -> Path:
    """Where the held-out examples go: train.jsonl -> train.validation.jsonl."""
    return out.with_name(f"{out.stem}.validation{out.suffix}")


def held_out(total: int, fraction: float, seed: int | None) -> set[int]:
    """Which of ``total`` examples (by position) go to validation: ``fraction`` of them, rounded,
    at least one when any is asked and two or more exist; the same choice for the same seed."""
    if fraction <= 0 or total < 2:
        return set()
    count = min(total - 1, max(1, round(total * fraction)))
    return set(random.Random(seed).sample(range(total), count))


def write(
    lines: Iterable[str], out: Path, tally: Tally, *, validation_split: float = 0.0, seed: int | None = 0
) -> None:
    """Write the examples to ``out`` (and the held-out ones to ``validation_path(out)``), each
    file replaced only once it is whole. The examples are streamed to a temporary file first: the
    split needs their count, and the output must never be left half-written. The files are
    readable by their owner only (they hold customers' words)."""
    folder = out.parent
    with _Temporary(folder) as everything:
        total = 0
        for line in lines:
            everything.file.write(line + "\n")
            total += 1
        chosen = held_out(total, validation_split, seed)
        everything.file.seek(0)
        with _Temporary(folder) as train, _Temporary(folder) as held:
            for number, line in enumerate(everything.file):
                (held if number in chosen else train).file.write(line)
            if chosen:
                held.replace(validation_path(out))
            train.replace(out)
    tally.written, tally.validation = total - len(chosen), len(chosen)


class _Temporary:
    """A temporary text file next to the output (so that renaming it into place is atomic),
    made readable by its owner only (``mkstemp``), removed on the way out unless renamed."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".finetune-", suffix=".tmp")
        self.path = Path(name)
        self.file = os.fdopen(fd, "w+", encoding="utf-8", newline="\n")

    def __enter__(self) -> _Temporary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)

    def replace(self, target: Path) -> None:
        """Put the whole file at ``target`` (written to disk first)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        os.replace(self.path, target)
