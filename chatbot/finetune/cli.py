"""``flask finetune``: prepare and validate training data, start and follow fine-tuning jobs on
OpenAI, list and cancel them, and compare two models before switching.

The commands are thin: the work is in ``prepare``, ``validate``, ``jobs`` and ``compare``. An
API failure (``jobs.JobError``) is printed as one line and exits 1, never as a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from ..extensions import db
from ..knowledge import evaluate
from ..models import Outcome
from . import compare, jobs, prepare, validate
from .masking import EMAIL, IMEI, PHONE, Masker

finetune_cli = AppGroup(
    "finetune",
    help="Fine-tune the model: prepare and validate training data, start, follow, list and cancel "
    "jobs, compare models.",
)

F = TypeVar("F", bound=Callable[..., Any])


def _one_line(command: F) -> F:
    """A ``JobError`` (no key, network, the API refused) ends the command with its one line."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except jobs.JobError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


_MASK_NAMES = {EMAIL: "e-mail address(es)", PHONE: "phone number(s)", IMEI: "IMEI(s)"}


@finetune_cli.command("prepare")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The training file to write (JSONL), replaced only once it is whole.",
)
@click.option(
    "--source",
    type=click.Choice(prepare.SOURCES),
    default="both",
    show_default=True,
    help="dataset: the bundled phone-support examples; conversations: the saved conversations; both.",
)
@click.option(
    "--feedback",
    type=click.Choice(["up"]),
    help="up: only conversations whose shown answers have at least one thumbs-up and no thumbs-down.",
)
@click.option(
    "--outcome",
    type=click.Choice([Outcome.RESOLVED.value]),
    help='resolved: only conversations the customer confirmed resolved ("Did this solve it?" -> Yes).',
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Only conversations started on or after this day (YYYY-MM-DD, UTC).",
)
@click.option(
    "--validation-split",
    type=click.FloatRange(0.0, 0.5, max_open=True),
    default=0.0,
    help="Hold out this share of the examples (e.g. 0.1) in FILE.validation.jsonl, next to FILE.",
)
@click.option("--no-mask", is_flag=True, help="Keep e-mail addresses, phone numbers and IMEIs as written.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation split's choice.")
def prepare_command(
    out: Path,
    source: str,
    feedback: str | None,
    outcome: str | None,
    since: datetime | None,
    validation_split: float,
    no_mask: bool,
    seed: int,
) -> None:
    """Write OpenAI chat fine-tuning examples: the system prompt, then the turns (a saved
    conversation's shown path, complete answers only), de-duplicated, with personal data masked.
    The filters apply to saved conversations only."""
    filters = prepare.Filters(feedback, outcome, since.replace(tzinfo=UTC) if since else None)
    if source == "dataset" and filters.any:
        raise click.UsageError(
            "--feedback, --outcome and --since choose saved conversations: not with --source dataset"
        )
    config = current_app.config
    masker = None if no_mask else Masker(keep=_shop_contact())
    tally = prepare.Tally()
    lines = prepare.examples(
        source, system_prompt=config["SYSTEM_PROMPT"], filters=filters, masker=masker, tally=tally
    )
    try:
        prepare.write(lines, out, tally, validation_split=validation_split, seed=seed)
    except OSError as exc:
        raise click.ClickException(f"can't write {out}: {exc.strerror or exc}") from None
    for line in _prepare_report(tally, out, masked=masker is not None):
        click.echo(line, err=True)


def _shop_contact() -> list[str]:
    """The shop's own contact details: public, so never masked."""
    config = current_app.config
    return [str(config.get(key) or "") for key in ("SUPPORT_PHONE", "SUPPORT_EMAIL", "SUPPORT_CONTACT")]


def _prepare_report(tally: prepare.Tally, out: Path, *, masked: bool) -> list[str]:
    read = ", ".join(
        f"{n} from the {'dataset' if k == 'dataset' else 'saved conversations'}"
        for k, n in tally.read.items()
    )
    lines = [f"Wrote {tally.written} example(s) to {out}."]
    if tally.validation:
        lines.append(f"Wrote {tally.validation} held-out example(s) to {prepare.validation_path(out)}.")
    lines.append(f"Read: {read or 'nothing'}.")
    skipped = sum(tally.skipped.values())
    details = ", ".join(f"{n} {why}" for why, n in tally.skipped.items())
    lines.append(f"Skipped: {skipped}" + (f" ({details})." if details else "."))
    if masked:
        counts = ", ".join(f"{tally.masked[kind]} {name}" for kind, name in _MASK_NAMES.items())
        lines.append(f"Masked: {counts}.")
    else:
        lines.append("Masked: nothing (--no-mask).")
    return lines


@finetune_cli.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--epochs", type=click.IntRange(1, 50), help="Epochs to estimate for (default: OpenAI's 'auto')."
)
@click.option(
    "--model",
    default=validate.DEFAULT_MODEL,
    show_default=True,
    help="The model to fine-tune (sets the per-example token limit).",
)
def validate_command(file: Path, epochs: int | None, model: str) -> None:
    """Check FILE as OpenAI checks chat fine-tuning data, and print its statistics and the
    estimated billable training tokens. Exits 1 listing each error with its line number."""
    try:
        report = validate.validate_file(file, model=model, epochs=epochs)
    except OSError as exc:
        raise click.ClickException(f"can't read {file}: {exc.strerror or exc}") from None
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        for problem in report.errors:
            click.echo(f"{file}: {problem}", err=True)
        raise click.ClickException(f"{file}: {len(report.errors)} error(s)")
    click.echo(f"{file}: OK")


# --- jobs ----------------------------------------------------------------------------------


def _checked(file: Path, model: str, epochs: int | None, *, training: bool = True) -> validate.Report:
    """FILE's validation report; refused (exit 1, each error with its line) when it has errors.
    A validation file is checked the same way, but one example is enough."""
    try:
        report = validate.validate_file(
            file, model=model, epochs=epochs, min_examples=validate.MIN_EXAMPLES if training else 1
        )
    except OSError as exc:
        raise click.ClickException(f"can't read {file}: {exc.strerror or exc}") from None
    if not report.ok:
        for problem in report.errors:
            click.echo(f"{file}: {problem}", err=True)
        raise click.ClickException(
            f"{file}: {len(report.errors)} error(s): nothing uploaded (see `flask finetune validate`)"
        )
    return report


@finetune_cli.command("start")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--validation-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Held-out examples OpenAI scores the model on while training (e.g. FILE.validation.jsonl).",
)
@click.option("--model", default=validate.DEFAULT_MODEL, show_default=True, help="The model to fine-tune.")
@click.option("--suffix", help="Up to 64 characters in the fine-tuned model's name (e.g. the shop's).")
@click.option("--epochs", type=click.IntRange(1, 50), help="Epochs to train (default: OpenAI's 'auto').")
@click.option("--yes", is_flag=True, help="Start without asking (the estimate is still printed).")
@_one_line
def start_command(
    file: Path, validation_file: Path | None, model: str, suffix: str | None, epochs: int | None, yes: bool
) -> None:
    """Validate FILE (and the validation file), upload them (purpose fine-tune) and start a
    fine-tuning job on OpenAI; print its id and how to follow it. Training is billed."""
    report = _checked(file, model, epochs)
    if validation_file is not None:
        _checked(validation_file, model, epochs, training=False)
    api = jobs.client(current_app.config)
    click.echo(
        f"{file}: {report.examples} examples, {report.total_tokens} tokens; estimated billable "
        f"training tokens: {report.billable_tokens} ({report.epochs} epochs"
        + (", OpenAI's 'auto' would likely choose this)" if report.epochs_estimated else ")")
    )
    if not yes:
        click.confirm(f"Upload and start fine-tuning {model}?", abort=True)
    training = jobs.upload(api, file)
    click.echo(f"Uploaded {file} as {training.id}.")
    validation_id = None
    if validation_file is not None:
        validation_id = jobs.upload(api, validation_file).id
        click.echo(f"Uploaded {validation_file} as {validation_id}.")
    job = jobs.create_job(
        api,
        training_file=training.id,
        model=model,
        validation_file=validation_id,
        suffix=suffix,
        epochs=epochs,
    )
    click.echo(f"Started fine-tuning job {job.id} ({job.status}).")
    click.echo(f"Follow it: flask finetune status {job.id} --follow")


@finetune_cli.command("status")
@click.argument("job_id", metavar="[JOB]", required=False)
@click.option("--follow", is_flag=True, help="Keep showing new events until the job ends.")
@click.option(
    "--interval",
    type=click.FloatRange(0.0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds between looks with --follow.",
)
@_one_line
def status_command(job_id: str | None, follow: bool, interval: float) -> None:
    """A fine-tuning job's status and events (default: the most recent job); with --follow, until
    it ends, then the fine-tuned model and how to switch to it. Exits 1 if the job failed or was
    cancelled."""
    api = jobs.client(current_app.config)
    job_id = job_id or jobs.latest(api).id
    job = jobs.follow(api, job_id, click.echo, keep_following=follow, interval=interval)
    if job.status == "succeeded" and job.fine_tuned_model:
        for line in jobs.switch_hint(job.fine_tuned_model, current_app.config["MODEL"]):
            click.echo(line)
    elif job.status in ("failed", "cancelled"):
        raise click.ClickException(jobs.failure(job))
    elif not follow:
        click.echo(f"Not finished yet: flask finetune status {job.id} --follow")


@finetune_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="How many jobs.")
@_one_line
def list_command(limit: int) -> None:
    """Recent fine-tuning jobs, newest first: id, status, model, fine-tuned model, created."""
    found = jobs.recent(jobs.client(current_app.config), limit)
    if not found:
        click.echo("No fine-tuning jobs yet.")
        return
    rows = [("JOB", "STATUS", "MODEL", "FINE-TUNED MODEL", "CREATED")] + [
        (j.id, j.status, j.model, j.fine_tuned_model or "-", jobs.when(j.created_at)) for j in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)) + "  " + row[4])


@finetune_cli.command("cancel")
@click.argument("job_id", metavar="JOB")
@_one_line
def cancel_command(job_id: str) -> None:
    """Cancel a fine-tuning job that has not ended."""
    job = jobs.cancel(jobs.client(current_app.config), job_id)
    click.echo(f"{job.id}: {job.status}")


@finetune_cli.command("compare")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="A model to ask; give two (e.g. the current one, then the fine-tuned one).",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def compare_command(models: tuple[str, ...], file: Path) -> None:
    """Ask FILE's questions (JSONL: question, lang, topic, as tests/eval/questions.jsonl) of two
    models through the OpenAI provider, as a turn would, and print their figures side by side:
    answers on topic, in the customer's language, latency p50/p95, failures, tokens."""
    if len(models) != 2:
        raise click.UsageError("give two models: --model A --model B")
    config = current_app.config
    if not config.get("OPENAI_API_KEY") and not config.get("OPENAI_BASE_URL"):
        raise click.ClickException("no OpenAI API key: set OPENAI_API_KEY (or CHATBOT_OPENAI_API_KEY)")
    try:
        cases = evaluate.read_cases(file)
    except evaluate.EvalFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    reports = compare.compare(db.session.connection(), cases, models, config)
    for line in compare.table(reports):
        click.echo(line)
    dead = [(model, r) for model, r in reports if all(x.error is not None for x in r.results)]
    if dead:
        model, report = dead[0]
        raise click.ClickException(f"{model}: every answer failed ({report.results[0].error})")
