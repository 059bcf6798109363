"""``flask articles index`` (build the help articles' index now) and ``flask articles list``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from ..cli import printable
from ..extensions import db
from ..llm import get_provider, make_provider
from ..models import HelpArticle, HelpIndex, HelpPassage
from . import articles, evaluate, index, source
from .briefing import contact

articles_cli = AppGroup("articles", help="The help articles the assistant answers from.")


@articles_cli.command("index")
@click.option("--force", is_flag=True, help="Rebuild even if the articles did not change.")
def index_command(force: bool) -> None:
    """Index the help articles (instance/articles/, or the samples when it has none)."""
    where = source(current_app)
    try:
        built = index.rebuild(where, force=force)
    except articles.ArticleError as exc:
        raise click.ClickException(f"not indexed (the previous index is kept): {exc}") from None
    state = "indexed" if built.changed else "already up to date"
    click.echo(f"{built.articles} articles, {built.passages} passages {state} from {built.source}")


@articles_cli.command("list")
def list_command() -> None:
    """The indexed articles: address, language, passages, title."""
    state = db.session.execute(select(HelpIndex).order_by(HelpIndex.id.desc())).scalars().first()
    if state is None:
        click.echo("No index yet: run `flask articles index`.")
        return
    rows = db.session.execute(
        select(HelpArticle.slug, HelpArticle.lang, func.count(HelpPassage.id), HelpArticle.title)
        .join(HelpPassage, HelpPassage.article_id == HelpArticle.id, isouter=True)
        .group_by(HelpArticle.id)
        .order_by(HelpArticle.slug)
    ).all()
    click.echo(
        f"{state.articles} articles from {state.source}, indexed {state.indexed_at:%Y-%m-%d %H:%M} UTC"
    )
    for slug, lang, passages, title in rows:
        click.echo(f"/help/{slug:<34} {lang}  {passages:>3}  {printable(title)}")


assistant_cli = AppGroup("assistant", help="The assistant: how well it answers.")


@assistant_cli.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--retrieval-only", is_flag=True, help="Only the look-up: don't ask the assistant.")
@click.option(
    "--provider", type=click.Choice(["offline", "openai"]), help="Ask this assistant (default: the app's)."
)
@click.option("--model", help="With --provider openai: this model (default: CHATBOT_MODEL).")
@click.option("--min-hit1", type=float, help="Fail (exit 1) below this retrieval hit rate at 1.")
@click.option("--min-hit3", type=float, help="Fail below this retrieval hit rate at 3.")
@click.option("--min-on-topic", type=float, help="Fail below this share of answers on topic.")
@click.option(
    "--min-language", type=float, help="Fail below this share of answers in the customer's language."
)
@click.option("-v", "--verbose", is_flag=True, help="A line per question.")
def eval_command(
    file: Path,
    retrieval_only: bool,
    provider: str | None,
    model: str | None,
    min_hit1: float | None,
    min_hit3: float | None,
    min_on_topic: float | None,
    min_language: float | None,
    verbose: bool,
) -> None:
    """Ask the questions of FILE (JSONL: question, lang, topic) and print retrieval hit rates,
    answers on topic and in the right language, and latency."""
    try:
        cases = evaluate.read_cases(file)
    except evaluate.EvalFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    config = current_app.config
    assistant = get_provider(current_app)
    if provider or model:
        assistant = make_provider(
            {**config, "PROVIDER": provider or config["PROVIDER"], "MODEL": model or config["MODEL"]}
        )
    report = evaluate.evaluate(
        db.session.connection(),
        cases,
        assistant,
        system_prompt=config["SYSTEM_PROMPT"],
        articles=int(config["RETRIEVAL_ARTICLES"]),
        contact=contact(config),
        answers=not retrieval_only,
    )
    click.echo(
        f"assistant: {'(retrieval only)' if retrieval_only else f'{assistant.name} ({assistant.model})'}"
    )
    for line in evaluate.lines(report, answers=not retrieval_only, verbose=verbose):
        click.echo(line)
    figures = report.figures()
    wanted = {"hit1": min_hit1, "hit3": min_hit3, "on_topic": min_on_topic, "language": min_language}
    below = [
        f"{name} {figures[name]:.2f} < {minimum:.2f}"
        for name, minimum in wanted.items()
        if minimum is not None
        and (name in ("hit1", "hit3") or not retrieval_only)
        and figures[name] < minimum
    ]
    if below:
        raise click.ClickException("below the thresholds: " + ", ".join(below))
