"""``flask finetune prepare`` (write a training file) and ``flask finetune validate`` (check one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from ..models import Outcome
from . import prepare, validate
from .masking import EMAIL, IMEI, PHONE, Masker

finetune_cli = AppGroup("finetune", help="Fine-tune the model: prepare and validate its training data.")

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
