"""Fine-tuning jobs on OpenAI: upload the training files, start a job, follow it, list, cancel.

Plain functions over the official SDK's ``files`` and ``fine_tuning.jobs``; the ``flask finetune``
commands (``cli.py``) only print what these return. Every call goes through ``calling()``, which
turns whatever the SDK raises (no key, network, a 4xx from the API) into a ``JobError`` of one
line that never holds the API key.

Events: ``list_events`` pages them newest first. ``new_events`` reads pages until it meets an
event already shown and returns the rest oldest first, so a follower prints each event once, in
order. A "metrics" event (``data.step`` / ``data.total_steps``) gives the training's progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import openai
from openai.types import FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

TERMINAL = ("succeeded", "failed", "cancelled")
PURPOSE: Literal["fine-tune"] = "fine-tune"
EVENTS_PAGE = 100  # events asked for a page (OpenAI's most)
FIRST_EVENTS = 20  # the first look at a job shows its newest events only (a job has thousands)


class JobError(Exception):
    """A fine-tuning step failed: the message is one line for the operator."""


def client(config: Mapping[str, Any]) -> openai.OpenAI:
    """The SDK client from the app's config: key, base URL, timeout and retries (one place)."""
    key = config.get("OPENAI_API_KEY")
    if not key:
        raise JobError(
            "no OpenAI API key: set OPENAI_API_KEY (or CHATBOT_OPENAI_API_KEY, or OPENAI_API_KEY "
            "in instance/config.py)"
        )
    return openai.OpenAI(
        api_key=str(key),
        base_url=config.get("OPENAI_BASE_URL") or None,
        timeout=float(config["OPENAI_TIMEOUT"]),
        max_retries=int(config["OPENAI_MAX_RETRIES"]),
    )


def explain(exc: openai.OpenAIError, key: str | None = None) -> JobError:
    """What went wrong, in one line (the API's own message for a 4xx); never the key."""
    if isinstance(exc, openai.APITimeoutError):
        text = "the OpenAI API did not answer in time (OPENAI_TIMEOUT)"
    elif isinstance(exc, openai.APIConnectionError):
        text = "can't reach the OpenAI API (network, or OPENAI_BASE_URL?)"
    elif isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        message = str((error or {}).get("message") or exc.message)
        text = f"the OpenAI API refused (HTTP {exc.status_code}): {message}"
        if exc.status_code == 401:
            text += " (check OPENAI_API_KEY)"
    else:
        text = f"OpenAI: {type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if key:
        text = text.replace(key, "[key]")
    return JobError(text)


@contextmanager
def calling(api: openai.OpenAI) -> Iterator[None]:
    """Run SDK calls; whatever they raise leaves as a one-line ``JobError``."""
    try:
        yield
    except openai.OpenAIError as exc:
        raise explain(exc, api.api_key) from None


def upload(api: openai.OpenAI, path: Path) -> FileObject:
    """Upload a training (or validation) file for fine-tuning."""
    with calling(api), path.open("rb") as f:
        return api.files.create(file=(path.name, f), purpose=PURPOSE)


def create_job(
    api: openai.OpenAI,
    *,
    training_file: str,
    model: str,
    validation_file: str | None = None,
    suffix: str | None = None,
    epochs: int | None = None,
) -> FineTuningJob:
    """Start supervised fine-tuning of ``model`` on the uploaded file(s). Without ``epochs`` OpenAI
    chooses ("auto"). The epochs go in ``method`` (the top-level ``hyperparameters`` is
    deprecated in OpenAI's API reference)."""
    kwargs: dict[str, Any] = {"model": model, "training_file": training_file}
    if validation_file:
        kwargs["validation_file"] = validation_file
    if suffix:
        kwargs["suffix"] = suffix
    if epochs:
        hyperparameters = {"n_epochs": epochs}
        kwargs["method"] = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
    with calling(api):
        return api.fine_tuning.jobs.create(**kwargs)


def retrieve(api: openai.OpenAI, job_id: str) -> FineTuningJob:
    with calling(api):
        return api.fine_tuning.jobs.retrieve(job_id)


def recent(api: openai.OpenAI, limit: int = 10) -> list[FineTuningJob]:
    """The most recent jobs, newest first."""
    with calling(api):
        page = api.fine_tuning.jobs.list(limit=limit)
        return list(page.data[:limit])


def latest(api: openai.OpenAI) -> FineTuningJob:
    """The most recent job (``status`` without JOB)."""
    jobs = recent(api, limit=1)
    if not jobs:
        raise JobError("no fine-tuning jobs yet: start one with `flask finetune start FILE`")
    return jobs[0]


def cancel(api: openai.OpenAI, job_id: str) -> FineTuningJob:
    with calling(api):
        return api.fine_tuning.jobs.cancel(job_id)


def new_events(api: openai.OpenAI, job_id: str, seen: set[str]) -> list[FineTuningJobEvent]:
    """The job's events not in ``seen``, oldest first (and added to ``seen``). With nothing seen
    yet, the newest ``FIRST_EVENTS`` only."""
    found: list[FineTuningJobEvent] = []
    with calling(api):
        if not seen:
            found = list(api.fine_tuning.jobs.list_events(job_id, limit=FIRST_EVENTS).data)
        else:
            for event in api.fine_tuning.jobs.list_events(job_id, limit=EVENTS_PAGE):  # pages on
                if event.id in seen:
                    break
                found.append(event)
    found.reverse()
    seen.update(e.id for e in found)
    return found


@dataclass(frozen=True, slots=True)
class Progress:
    step: int
    total: int

    def bar(self, width: int = 20) -> str:
        done = round(width * self.step / self.total) if self.total else 0
        return f"[{'#' * done}{'.' * (width - done)}] step {self.step}/{self.total}"


def progress(event: FineTuningJobEvent) -> Progress | None:
    """The training's step from a metrics event (None for other events)."""
    data = event.data if isinstance(event.data, dict) else {}
    step, total = data.get("step"), data.get("total_steps")
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        return Progress(step, total)
    return None


def when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def event_line(event: FineTuningJobEvent) -> str:
    level = "" if event.level == "info" else f"{event.level.upper()}: "
    return f"{when(event.created_at)}  {level}{event.message}"


def status_line(job: FineTuningJob, last: Progress | None) -> str:
    """The job's state as one line: the progress bar while training, else the status."""
    shown = last.bar() if last is not None and job.status == "running" else job.status
    return f"{job.id}: {shown}"


def failure(job: FineTuningJob) -> str:
    """Why a job did not succeed, in one line."""
    if job.status == "cancelled":
        return f"{job.id} was cancelled"
    error = job.error
    message = (error.message if error else None) or "no reason given"
    code = f" ({error.code})" if error and error.code else ""
    return f"{job.id} failed{code}: {message}"


def switch_hint(model: str, current: str) -> list[str]:
    """How to check the fine-tuned model against the current one, then serve it."""
    return [
        f"Fine-tuned model: {model}",
        "Compare it with the current model first:",
        f"  flask finetune compare --model {current} --model {model} tests/eval/questions.jsonl",
        "Then switch the chat to it, in the environment:",
        f"  CHATBOT_MODEL={model}",
        "or in instance/config.py:",
        f'  MODEL = "{model}"',
        "and restart the app.",
    ]


def follow(
    api: openai.OpenAI,
    job_id: str,
    show: Callable[[str], None],
    *,
    keep_following: bool,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> FineTuningJob:
    """Show the job's status and its new events; with ``keep_following``, again every ``interval``
    seconds until it ends. Returns the job as last read."""
    seen: set[str] = set()
    last: Progress | None = None
    shown_status = ""
    while True:
        job = retrieve(api, job_id)
        for event in new_events(api, job_id, seen):
            show(event_line(event))
            last = progress(event) or last
        line = status_line(job, last)
        if line != shown_status:  # (unchanged: nothing to add)
            show(line)
            shown_status = line
        if job.status in TERMINAL or not keep_following:
            return job
        sleep(interval)
