"""Fine-tuning data: ``flask finetune prepare`` writes training examples from the bundled dataset
and the saved conversations (the shown path, filtered, masked, de-duplicated, with a seeded
validation split), and ``flask finetune validate`` checks a file as OpenAI does, naming the line
of each error, with statistics and the billable-token estimate."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from chatbot.chat.export import validate_chat_line
from chatbot.extensions import db
from chatbot.finetune import validate
from chatbot.finetune.masking import Masker
from chatbot.llm.offline import DATASET
from chatbot.models import Conversation

from .fake_openai import Reply
from .helpers import HX, all_messages, conversation_id_from, message_url, post_url, send

SYSTEM = "You help with phones. Be brief."
DATASET_LINES = sum(1 for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip())


@pytest.fixture
def app(app_factory, openai_config):
    return app_factory(**openai_config, SYSTEM_PROMPT=SYSTEM)


def prepare(runner, out, *args: str):
    return runner.invoke(args=["finetune", "prepare", "--out", str(out), *args])


def examples(path) -> list[list[dict[str, str]]]:
    """The file's examples (each line checked as the app's own export checks it)."""
    return [validate_chat_line(line) for line in path.read_text(encoding="utf-8").splitlines()]


def turns(path) -> list[list[str]]:
    """Each example's contents, system prompt left out."""
    return [[m["content"] for m in example if m["role"] != "system"] for example in examples(path)]


def ask(client, question: str, cid: str | None = None) -> str:
    response = send(client, question, cid)
    return cid or conversation_id_from(response)


def answer_id(app, content: str) -> int:
    return next(m.id for m in all_messages(app) if m.content == content and not m.is_user)


def rate(client, app, cid: str, content: str, rating: str) -> None:
    response = client.post(
        message_url(cid, answer_id(app, content), "feedback"), data={"rating": rating}, headers=HX
    )
    assert response.status_code == 200


# --- validate ------------------------------------------------------------------------------


def good(i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    }


def training_file(tmp_path, lines: list[str], name: str = "train.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def with_line(tmp_path, number: int, bad: str, total: int = 12):
    """A file of ``total`` good examples, line ``number`` (from 1) replaced by ``bad``."""
    lines = [json.dumps(good(i)) for i in range(total)]
    lines[number - 1] = bad
    return training_file(tmp_path, lines)


def message_with(**fields) -> str:
    example = good(0)
    example["messages"][1] = {"role": "user", "content": "q", **fields}
    return json.dumps(example)


ERRORS = {
    "bad JSON": ('{"messages": [', "not valid JSON"),
    "not an object": ("[1, 2]", "not a JSON object (a list)"),
    "no messages": ('{"msgs": []}', 'no "messages"'),
    "messages not a list": ('{"messages": "hi"}', '"messages" is not a non-empty list'),
    "unknown top-level key": (json.dumps({**good(0), "tools": []}), 'unknown key "tools"'),
    "unknown role": (message_with(role="tool"), 'message 2: unknown role "tool"'),
    "unknown key": (message_with(tool_calls=[]), 'message 2: unknown key "tool_calls"'),
    "missing content": (json.dumps({"messages": [{"role": "assistant"}]}), "message 1: no content"),
    "null content": (message_with(content=None), "message 2: no content"),
    "content not a string": (message_with(content=["q"]), "message 2: content is not a string"),
    "empty content": (message_with(content="  "), "message 2: empty content"),
    "no role": (json.dumps({"messages": [{"content": "q"}, good(0)["messages"][2]]}), "message 1: no role"),
    "weight on a user message": (message_with(weight=1), "message 2: weight on a message that is not"),
    "no assistant message": (json.dumps({"messages": good(0)["messages"][:2]}), "no assistant message"),
    "over the token limit": (
        json.dumps(
            {"messages": [{"role": "user", "content": "1234567890" * 30_000}, good(0)["messages"][2]]}
        ),
        "over the 65536-token limit",
    ),
    "empty line": ("", "empty line"),
}


@pytest.mark.parametrize("kind", ERRORS)
@pytest.mark.parametrize("number", [1, 7])
def test_validate_names_the_line_of_each_kind_of_error(runner, tmp_path, kind, number):
    bad, expected = ERRORS[kind]
    path = with_line(tmp_path, number, bad)
    result = runner.invoke(args=["finetune", "validate", str(path)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{path}: line ")]
    assert errors and all(line.startswith(f"{path}: line {number}: ") for line in errors), result.stderr
    assert any(expected in line for line in errors), errors
    assert result.stderr.rstrip().endswith(f"Error: {path}: {len(errors)} error(s)")


def test_validate_lists_every_error_and_the_function_reports_them(tmp_path):
    lines = [json.dumps(good(i)) for i in range(12)]
    lines[2] = "{oops"
    lines[9] = message_with(role="function", colour="red")
    report = validate.validate_file(training_file(tmp_path, lines))
    assert not report.ok
    assert [(p.line, p.message) for p in report.errors] == [
        (3, report.errors[0].message),
        (10, 'message 2: unknown key "colour"'),
        (10, 'message 2: unknown role "function" (use system, user, assistant)'),
    ]
    assert report.errors[0].message.startswith("not valid JSON")
    assert report.examples == 11  # (the line that parsed counts in the statistics)


def test_validate_needs_ten_examples(runner, tmp_path):
    path = training_file(tmp_path, [json.dumps(good(i)) for i in range(9)])
    result = runner.invoke(args=["finetune", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: 9 examples: a training file needs at least 10" in result.stderr
    path = training_file(tmp_path, [json.dumps(good(i)) for i in range(10)])
    assert runner.invoke(args=["finetune", "validate", str(path)]).exit_code == 0


def test_validate_accepts_names_and_weights_and_a_file_that_is_not_utf8_is_an_error(runner, tmp_path):
    lines = [json.dumps(good(i)) for i in range(10)]
    example = good(10)
    example["messages"][1]["name"] = "ana"
    example["messages"][2]["weight"] = 0
    lines.append(json.dumps(example))
    assert validate.validate_lines(lines).ok
    path = tmp_path / "latin1.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n" + json.dumps(good(11)).encode()[:-2] + b'\xe9"}\n')
    report = validate.validate_file(path)
    assert [(p.line, p.message) for p in report.errors] == [(12, "not UTF-8 text")]


def test_validate_passes_the_bundled_dataset_with_its_statistics(runner):
    result = runner.invoke(args=["finetune", "validate", str(DATASET)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"examples: {DATASET_LINES}\n" in out
    assert re.search(r"messages per example: min 3, median \d+(\.\d)?, max \d+", out)
    assert re.search(r"tokens per example: min \d+, median [\d.]+, max \d+", out)
    assert "examples over the 65536-token limit of gpt-4.1-nano-2025-04-14: 0" in out
    assert "examples without an assistant message: 0" in out
    total = int(re.search(r"total tokens: (\d+)", out).group(1))
    assert total == sum(
        validate.count_tokens(json.loads(line)["messages"]) for line in DATASET.read_text().splitlines()
    )
    assert "epochs: 3 (OpenAI's 'auto' would likely choose this)" in out
    assert f"estimated billable training tokens: {total * 3} (an estimate" in out
    assert out.endswith(f"{DATASET}: OK\n")


def test_the_billable_estimate_follows_the_epochs_and_caps_long_examples(runner, tmp_path):
    lines = [json.dumps(good(i)) for i in range(10)]
    result = runner.invoke(
        args=["finetune", "validate", str(training_file(tmp_path, lines)), "--epochs", "2"]
    )
    total = int(re.search(r"total tokens: (\d+)", result.stdout).group(1))
    assert "epochs: 2\n" in result.stdout
    assert f"estimated billable training tokens: {total * 2} " in result.stdout
    report = validate.validate_lines(lines)
    assert report.epochs == 10  # (OpenAI's "auto" on 10 examples: about 100 example passes)
    long = {"messages": [{"role": "user", "content": "1234567890" * 30_000}, good(0)["messages"][2]]}
    report = validate.validate_lines([*lines, json.dumps(long)], epochs=1)
    assert report.over_limit == 1 and report.billable_tokens == total + validate.TOKEN_LIMIT
    assert validate.token_limit("gpt-3.5-turbo-0125") == 16_385
    assert validate.token_limit("ft:gpt-4.1-nano-2025-04-14:acme:phones:abc") == 65_536


# --- masking -------------------------------------------------------------------------------

MASKED = [
    ("write to ana.perez+shop@gmail.com please", "write to [email] please"),
    ("Mail: JOHN_DOE@Example.co.uk.", "Mail: [email]."),
    ("call me on +34 600 123 456", "call me on [phone]"),
    ("+34600123456 or 0034 600 123 456", "[phone] or [phone]"),
    ("my number is 600123456", "my number is [phone]"),
    ("móvil 600 12 34 56 o fijo 91 123 45 67", "móvil [phone] o fijo [phone]"),
    ("US: (555) 123-4567, 555-123-4567 or 555.123.4567", "US: [phone], [phone] or [phone]"),
    ("+1 (555) 123-4567 and +44 20 7946 0958", "[phone] and [phone]"),
    ("IMEI 352099001761481.", "IMEI [imei]."),
    ("IMEI: 35-209900-176148-1 / 35 209900 176148 1", "IMEI: [imei] / [imei]"),
    ("typed 490154203237519 (wrong check digit)", "typed [imei] (wrong check digit)"),
]
UNTOUCHED = [
    "The iPhone 15 Pro costs €1.299,99 (or $999.00) since September 2023.",
    "We're open 9:00-20:00, Monday to Friday; 10:00-14:00 on Saturdays.",
    "The Galaxy S24 (SM-S921B) and the Pixel 8 have 128 GB and 5000 mAh; model A2633.",
    "Warranty: 2 years (2019-2024 models), 24-48 hours for a repair, 6.1-inch screen, 5G.",
    "Dial *#06# to see the IMEI; the PIN is 4 digits (1234 by default), the PUK 8 (12345678).",
    "Order 2024-05-01 shipped; a 20% discount, 3 x 30 € = 90 €.",
]


@pytest.mark.parametrize("text,expected", MASKED)
def test_personal_data_is_masked(text, expected):
    assert Masker().mask(text) == expected


@pytest.mark.parametrize("text", UNTOUCHED)
def test_prices_years_models_and_times_are_left_alone(text):
    masker = Masker()
    assert masker.mask(text) == text and not masker.counts


def test_the_shops_own_contact_is_kept():
    masker = Masker(keep=["+34 900 123 456", "help@shop.example"])
    text = (
        "Call 900 123 456 (or +34 900 123 456) or write to help@shop.example, not ana@x.com or 600 111 222."
    )
    assert masker.mask(text) == (
        "Call 900 123 456 (or +34 900 123 456) or write to help@shop.example, not [email] or [phone]."
    )
    assert masker.take() == {"email": 1, "phone": 1} and not masker.counts


# --- prepare -------------------------------------------------------------------------------


def test_prepare_from_the_dataset_uses_the_configured_system_prompt_and_passes_validate(
    app, runner, tmp_path
):
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "dataset")
    assert result.exit_code == 0, result.output
    found = examples(out)
    assert len(found) == DATASET_LINES
    assert all(example[0] == {"role": "system", "content": SYSTEM} for example in found)
    original = [json.loads(line)["messages"] for line in DATASET.read_text().splitlines()]
    assert [e[1:] for e in found] == [[m for m in o if m["role"] != "system"] for o in original]
    assert f"Wrote {DATASET_LINES} example(s) to {out}." in result.stderr
    assert f"Read: {DATASET_LINES} from the dataset." in result.stderr
    assert "Skipped: 0." in result.stderr
    assert "Masked: 0 e-mail address(es), 0 phone number(s), 0 IMEI(s)." in result.stderr
    assert runner.invoke(args=["finetune", "validate", str(out)]).exit_code == 0
    assert out.stat().st_mode & 0o077 == 0  # (customers' words: the owner's only)
    assert not list(tmp_path.glob(".finetune-*"))  # no temporary file left


def test_prepare_from_conversations_writes_the_shown_path_of_complete_answers(
    app, client, runner, fake_openai, tmp_path
):
    fake_openai.will(Reply("a1"), Reply("a2"), Reply("a3"), Reply("a2 again"), Reply("a2 third"))
    cid = ask(client, "q1")
    ask(client, "q2", cid)
    ask(client, "q3", cid)
    q2 = next(m.id for m in all_messages(app) if m.content == "q2")
    edited = client.post(
        post_url(cid),
        data={"content": "", "edit": str(q2), "edit_content": "q2 edited"},
        headers=HX,
        buffered=True,
    )
    assert edited.status_code == 200
    regenerated = client.post(
        post_url(cid),
        data={"content": "", "regenerate": str(answer_id(app, "a2 again"))},
        headers=HX,
        buffered=True,
    )
    assert regenerated.status_code == 200
    fake_openai.will(Reply(status=401), Reply("cut", finish_reason="length"))
    ask(client, "never answered")  # (its own conversation: no answer to learn from)
    ask(client, "cut short")
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "conversations")
    assert result.exit_code == 0, result.output
    assert turns(out) == [["q1", "a1", "q2 edited", "a2 third"]]
    assert examples(out)[0][0] == {"role": "system", "content": SYSTEM}
    assert "Read: 3 from the saved conversations." in result.stderr
    assert "Skipped: 2 (2 without a complete answer to learn from)." in result.stderr


def test_prepare_from_both_and_dedupe(app, client, runner, fake_openai, tmp_path):
    fake_openai.will(Reply("same answer"), Reply("same answer"), Reply("other answer"))
    ask(client, "same question")
    ask(client, "same question")
    ask(client, "other question")
    dataset_question = json.loads(DATASET.read_text().splitlines()[0])["messages"]
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "both")
    assert result.exit_code == 0, result.output
    found = turns(out)
    assert len(found) == DATASET_LINES + 2
    assert found[0] == [m["content"] for m in dataset_question if m["role"] != "system"]
    assert found[-2:] == [["same question", "same answer"], ["other question", "other answer"]]
    assert f"Read: {DATASET_LINES} from the dataset, 3 from the saved conversations." in result.stderr
    assert "Skipped: 1 (1 duplicates)." in result.stderr
    assert len({json.dumps(e) for e in examples(out)}) == len(found)


def test_prepare_keeps_conversations_rated_up_and_none_down(app, client, runner, fake_openai, tmp_path):
    fake_openai.will(*(Reply(f"answer {i}") for i in range(6)))
    liked = ask(client, "liked")
    disliked = ask(client, "disliked")
    mixed = ask(client, "mixed")
    ask(client, "mixed again", mixed)
    ask(client, "unrated")
    edited = ask(client, "liked then edited")
    rate(client, app, liked, "answer 0", "up")
    rate(client, app, disliked, "answer 1", "down")
    rate(client, app, mixed, "answer 2", "up")
    rate(client, app, mixed, "answer 3", "down")
    rate(client, app, edited, "answer 5", "up")
    fake_openai.will(Reply("answer after the edit"))
    question = next(m.id for m in all_messages(app) if m.content == "liked then edited")
    client.post(
        post_url(edited), data={"content": "", "edit": str(question), "edit_content": "edited"}, headers=HX
    )
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "conversations", "--feedback", "up")
    assert result.exit_code == 0, result.output
    assert turns(out) == [["liked", "answer 0"]]  # (the rated answer was set aside by the edit)
    assert "Skipped: 4 (4 not rated thumbs-up (or rated thumbs-down))." in result.stderr
    result = runner.invoke(args=["finetune", "prepare", "--help"])
    assert "at least one thumbs-up and no thumbs-down" in " ".join(result.output.split()).replace("- ", "-")


def test_prepare_keeps_confirmed_resolved_conversations(app_factory, tmp_path):
    shop = app_factory(PROVIDER="offline")
    client = shop.test_client()
    question = "How long is the warranty on a new phone?"
    outcomes = {}
    for choice in ("yes", "no", None):
        client.post("/new")
        cid = ask(client, question + ("" if choice is None else f" ({choice})"))
        reply = all_messages(shop)[-1]
        assert reply.meta.get("ask_outcome"), reply.meta
        if choice:
            response = client.post(message_url(cid, reply.id, "outcome"), data={"answer": choice}, headers=HX)
            assert response.status_code == 200
        outcomes[cid] = choice
    out = tmp_path / "train.jsonl"
    result = prepare(shop.test_cli_runner(), out, "--source", "conversations", "--outcome", "resolved")
    assert result.exit_code == 0, result.output
    assert [t[0] for t in turns(out)] == [question + " (yes)"]
    assert "Skipped: 2 (2 without the outcome asked for)." in result.stderr


def test_prepare_since_a_day(app, client, runner, fake_openai, tmp_path):
    fake_openai.will(Reply("old answer"), Reply("new answer"))
    old = ask(client, "old question")
    ask(client, "new question")
    with app.app_context():
        db.session.execute(
            update(Conversation)
            .where(Conversation.public_id == old)
            .values(created_at=datetime(2024, 12, 31, 23, 59, tzinfo=UTC))
        )
        db.session.commit()
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "conversations", "--since", "2025-01-01")
    assert result.exit_code == 0, result.output
    assert turns(out) == [["new question", "new answer"]]
    assert "Skipped: 1 (1 started before --since)." in result.stderr
    assert len(turns(out)) == 1
    result = prepare(runner, out, "--source", "conversations", "--since", "2024-12-31")
    assert len(turns(out)) == 2
    assert prepare(runner, out, "--since", "31/12/2024").exit_code == 2


def test_filters_are_for_conversations_only(app, runner, tmp_path):
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "dataset", "--feedback", "up")
    assert result.exit_code == 2 and "not with --source dataset" in result.output
    assert not out.exists()


PERSONAL = "I'm ana@example.com, call +34 600 123 456 or (555) 123-4567; IMEI 35-209900-176148-1, iPhone 15."
ANSWER = (
    "I'll write to ana@example.com. The iPhone 15 repair costs €149 in 2025, open 9:00-20:00; "
    "600123456 noted."
)


def test_prepare_masks_personal_data_in_both_sides_and_no_mask_keeps_it(
    app, client, runner, fake_openai, tmp_path
):
    fake_openai.will(Reply(ANSWER))
    ask(client, PERSONAL)
    out = tmp_path / "train.jsonl"
    result = prepare(runner, out, "--source", "conversations")
    assert result.exit_code == 0, result.output
    assert turns(out) == [
        [
            "I'm [email], call [phone] or [phone]; IMEI [imei], iPhone 15.",
            "I'll write to [email]. The iPhone 15 repair costs €149 in 2025, open 9:00-20:00; [phone] noted.",
        ]
    ]
    assert "Masked: 2 e-mail address(es), 3 phone number(s), 1 IMEI(s)." in result.stderr
    result = prepare(runner, out, "--source", "conversations", "--no-mask")
    assert turns(out) == [[PERSONAL, ANSWER]]
    assert "Masked: nothing (--no-mask)." in result.stderr


def test_the_shops_configured_contact_is_not_masked(app_factory, openai_config, fake_openai, tmp_path):
    shop = app_factory(**openai_config, SUPPORT_PHONE="+34 900 123 456", SUPPORT_EMAIL="help@shop.example")
    fake_openai.will(Reply("Call 900 123 456 or write to help@shop.example."))
    ask(shop.test_client(), "my number is 600 123 456")
    out = tmp_path / "train.jsonl"
    assert prepare(shop.test_cli_runner(), out, "--source", "conversations").exit_code == 0
    assert turns(out) == [["my number is [phone]", "Call 900 123 456 or write to help@shop.example."]]


def test_the_validation_split_is_held_out_seeded_and_disjoint(app, runner, tmp_path):
    whole = tmp_path / "all.jsonl"
    assert prepare(runner, whole, "--source", "dataset").exit_code == 0
    out = tmp_path / "train.jsonl"
    held = tmp_path / "train.validation.jsonl"
    result = prepare(runner, out, "--source", "dataset", "--validation-split", "0.1", "--seed", "7")
    assert result.exit_code == 0, result.output
    expected_held = round(DATASET_LINES * 0.1)
    train_lines, held_lines = out.read_text().splitlines(), held.read_text().splitlines()
    assert len(held_lines) == expected_held and len(train_lines) == DATASET_LINES - expected_held
    assert not set(train_lines) & set(held_lines)
    assert sorted(train_lines + held_lines) == sorted(whole.read_text().splitlines())
    assert f"Wrote {expected_held} held-out example(s) to {held}." in result.stderr
    first = held.read_text()
    prepare(runner, out, "--source", "dataset", "--validation-split", "0.1", "--seed", "7")
    assert held.read_text() == first  # the same seed, the same choice
    prepare(runner, out, "--source", "dataset", "--validation-split", "0.1", "--seed", "8")
    assert held.read_text() != first
    assert runner.invoke(args=["finetune", "validate", str(out)]).exit_code == 0
    assert runner.invoke(args=["finetune", "validate", str(held)]).exit_code == 0


def test_a_file_is_replaced_only_when_whole(app, runner, tmp_path):
    out = tmp_path / "missing" / "train.jsonl"
    result = prepare(runner, out, "--source", "dataset")
    assert result.exit_code == 1 and f"Error: can't write {out}" in result.output
    out = tmp_path / "train.jsonl"
    out.write_text("the previous file\n")
    assert prepare(runner, out, "--source", "dataset", "--validation-split", "0.6").exit_code == 2
    assert out.read_text() == "the previous file\n"
