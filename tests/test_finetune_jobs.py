"""Fine-tuning jobs against the fake OpenAI server (``tests/fake_openai.py``: files and jobs in
OpenAI's wire format): ``flask finetune start`` validates, uploads and creates the job;
``status --follow`` prints each event once until the job ends, then the model and how to switch;
``list`` and ``cancel``; ``compare`` runs the evaluation against two models side by side. Errors
are one line and exit 1, never a traceback or the key."""

from __future__ import annotations

import json
import re

import pytest

from .fake_openai import FAILURE, FINE_TUNED_MODEL, SUCCEEDED_SCRIPT, Reply

SYSTEM = "You help with phones. Be brief."
KEY = "sk-test-not-a-real-key"
BASE = "gpt-4.1-nano-2025-04-14"


@pytest.fixture
def app(app_factory, openai_config):
    return app_factory(**openai_config, SYSTEM_PROMPT=SYSTEM)


@pytest.fixture
def files(runner, tmp_path):
    """A prepared training file and its held-out validation file (from the bundled dataset)."""
    out = tmp_path / "train.jsonl"
    result = runner.invoke(
        args=["finetune", "prepare", "--out", str(out), "--source", "dataset", "--validation-split", "0.1"]
    )
    assert result.exit_code == 0, result.output
    validation = tmp_path / "train.validation.jsonl"
    assert out.exists() and validation.exists()
    return out, validation


def invoke(runner, *args: str, input: str | None = None):
    result = runner.invoke(args=["finetune", *args], input=input)
    assert "Traceback" not in result.output + result.stderr
    assert KEY not in result.output + result.stderr
    return result


def start(runner, train, *args: str):
    return invoke(runner, "start", str(train), "--yes", *args)


def job_id_from(result) -> str:
    found = re.search(r"Started fine-tuning job (ftjob-\w+)", result.output)
    assert found, result.output
    return found.group(1)


def scripted_messages(training_file: str, job_id: str) -> list[str]:
    return [
        message.format(training_file=training_file, id=job_id)
        for _, events in SUCCEEDED_SCRIPT
        for _, message, _ in events
    ]


def test_prepare_validate_start_follow_and_compare(runner, app, files, fake_openai, tmp_path):
    train, validation = files
    assert invoke(runner, "validate", str(train)).exit_code == 0

    result = start(runner, train, "--validation-file", str(validation), "--suffix", "shop", "--epochs", "2")
    assert result.exit_code == 0, result.output + result.stderr
    assert re.search(r"estimated billable training tokens: \d+ \(2 epochs\)", result.output)
    job_id = job_id_from(result)
    assert f"flask finetune status {job_id} --follow" in result.output

    # the uploads: the prepared files' bytes, for fine-tuning
    uploads = fake_openai.fine_tuning.uploads()
    assert [u["content"] for u in uploads] == [train.read_bytes(), validation.read_bytes()]
    assert {u["purpose"] for u in uploads} == {"fine-tune"}
    assert [u["filename"] for u in uploads] == [train.name, validation.name]
    # the job's parameters
    (params,) = fake_openai.fine_tuning.created
    assert params["model"] == BASE
    assert params["suffix"] == "shop"
    assert params["training_file"] == uploads[0]["id"]
    assert params["validation_file"] == uploads[1]["id"]
    assert params["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}

    # followed to the end: every event once, in order, with the progress, then the switch
    result = invoke(runner, "status", job_id, "--follow", "--interval", "0.01")
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    messages = scripted_messages(uploads[0]["id"], job_id)
    positions = []
    for message in messages:
        assert out.count(message) == 1, (message, out)
        positions.append(out.index(message))
    assert positions == sorted(positions)
    assert f"{job_id}: [" in out and "step 3/3" in out  # the progress display
    assert out.index("step 1/3") < out.index("step 3/3")
    assert f"Fine-tuned model: {FINE_TUNED_MODEL}" in out
    assert f"CHATBOT_MODEL={FINE_TUNED_MODEL}" in out
    assert f'MODEL = "{FINE_TUNED_MODEL}"' in out
    assert f"flask finetune compare --model {app.config['MODEL']} --model {FINE_TUNED_MODEL}" in out
    assert out.rstrip().splitlines()[-1] == "and restart the app."

    # compare the base model with the new one on the same questions (the fake answers by model)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps({"question": q, "lang": "en", "topic": "warranty"})
            for q in (
                "how long is the guarantee on a phone i got from you?",
                "Is a broken microphone covered by the warranty?",
            )
        )
        + "\n"
    )
    fake_openai.by_model[BASE] = Reply("Restart your phone, then check Settings > Battery.")
    fake_openai.by_model[FINE_TUNED_MODEL] = Reply(
        "Your phone has a 2-year warranty from the purchase date: a manufacturing fault is repaired "
        "free of charge under the warranty. Bring the receipt.",
        first_token_delay=0.05,
    )
    result = invoke(runner, "compare", "--model", BASE, "--model", FINE_TUNED_MODEL, str(questions))
    assert result.exit_code == 0, result.output + result.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in result.output.splitlines()}
    assert BASE in result.output and FINE_TUNED_MODEL in result.output
    assert rows["answers on topic"][-2:] == ["0.00", "1.00"]
    assert rows["in the customer's language"][-2:] == ["1.00", "1.00"]
    p50 = re.findall(r"(\d+) ms", next(line for line in result.output.splitlines() if "p50" in line))
    assert len(p50) == 2 and int(p50[1]) >= 50  # (the fine-tuned model's 50 ms before its first token)
    assert len(re.findall(r"\d+ ms", next(ln for ln in result.output.splitlines() if "p95" in ln))) == 2
    completion = rows["completion tokens"][-2:]
    assert all(n.isdigit() for n in completion) and int(completion[1]) > int(completion[0])
    models = [
        json.loads(r.body)["model"] for r in fake_openai.requests if r.path.endswith("/chat/completions")
    ]
    assert models == [BASE, BASE, FINE_TUNED_MODEL, FINE_TUNED_MODEL]


def test_status_without_job_is_the_latest_and_shows_events_once(runner, app, files, fake_openai):
    train, _ = files
    first = job_id_from(start(runner, train))
    second = job_id_from(start(runner, train))
    assert first != second
    result = invoke(runner, "status")
    assert result.exit_code == 0
    assert f"Created fine-tuning job: {second}" in result.output
    assert first not in result.output
    assert f"{second}: queued" in result.output  # (each look moves the fake on one stage)
    assert f"Not finished yet: flask finetune status {second} --follow" in result.output
    # no hyperparameters asked for: OpenAI chooses
    assert all("method" not in p and "hyperparameters" not in p for p in fake_openai.fine_tuning.created)


def test_a_failed_job_exits_non_zero_with_its_error(runner, app, files, fake_openai):
    train, _ = files
    fake_openai.fine_tuning.outcome = "failed"
    job_id = job_id_from(start(runner, train))
    result = invoke(runner, "status", job_id, "--follow", "--interval", "0.01")
    assert result.exit_code == 1
    assert f"ERROR: {FAILURE['message']}" in result.output  # the error event
    assert f"Error: {job_id} failed (invalid_training_file): {FAILURE['message']}" in result.stderr
    assert "CHATBOT_MODEL" not in result.output


def test_cancel_and_list(runner, app, files, fake_openai):
    train, _ = files
    first = job_id_from(start(runner, train, "--suffix", "one"))
    second = job_id_from(start(runner, train))
    assert invoke(runner, "status", first, "--follow", "--interval", "0.01").exit_code == 0

    result = invoke(runner, "cancel", second)
    assert result.exit_code == 0
    assert result.output.strip() == f"{second}: cancelled"
    assert fake_openai.fine_tuning.jobs[second]["status"] == "cancelled"
    result = invoke(runner, "status", second)
    assert result.exit_code == 1
    assert f"Error: {second} was cancelled" in result.stderr

    # cancelling an ended job: the API's 400, in one line
    result = invoke(runner, "cancel", first)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: the OpenAI API refused (HTTP 400): Job {first} has already succeeded"
    )

    result = invoke(runner, "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "MODEL", "FINE-TUNED", "MODEL", "CREATED"]
    assert lines[1].split()[:4] == [second, "cancelled", BASE, "-"]
    assert lines[2].split()[:4] == [first, "succeeded", BASE, FINE_TUNED_MODEL]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", lines[1])
    result = invoke(runner, "list", "--limit", "1")
    assert len(result.output.splitlines()) == 2


def test_an_invalid_file_is_refused_before_any_upload(runner, app, files, fake_openai, tmp_path):
    train, validation = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(train.read_text().replace('"assistant"', '"bot"', 1))
    result = invoke(runner, "start", str(bad), "--yes")
    assert result.exit_code == 1
    assert f"{bad}: line 1: message" in result.stderr and 'unknown role "bot"' in result.stderr
    assert "nothing uploaded" in result.stderr

    broken_validation = tmp_path / "bad.validation.jsonl"
    broken_validation.write_text("{not json\n")
    result = invoke(runner, "start", str(train), "--yes", "--validation-file", str(broken_validation))
    assert result.exit_code == 1
    assert f"{broken_validation}: line 1: not valid JSON" in result.stderr
    assert fake_openai.fine_tuning.files == {} and fake_openai.fine_tuning.created == []
    assert fake_openai.fine_tuning.calls == []

    # a small validation file is fine (one example is enough for it)
    small = tmp_path / "small.validation.jsonl"
    small.write_text(validation.read_text().splitlines()[0] + "\n")
    assert start(runner, train, "--validation-file", str(small)).exit_code == 0


def test_start_asks_first_without_yes(runner, app, files, fake_openai):
    train, _ = files
    result = invoke(runner, "start", str(train), input="n\n")
    assert result.exit_code == 1
    assert "estimated billable training tokens" in result.output
    assert fake_openai.fine_tuning.calls == []
    result = invoke(runner, "start", str(train), input="y\n")
    assert result.exit_code == 0
    assert len(fake_openai.fine_tuning.created) == 1


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "ftjob-x"), ("list",), ("cancel", "ftjob-x"), ("start", "TRAIN", "--yes")],
)
def test_no_api_key_is_one_clear_line(app_factory, openai_config, files, fake_openai, args):
    app = app_factory(**{**openai_config, "OPENAI_API_KEY": None, "PROVIDER": "offline"})
    train, _ = files
    result = invoke(app.test_cli_runner(), *(str(train) if a == "TRAIN" else a for a in args))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no OpenAI API key: set OPENAI_API_KEY")
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake_openai.fine_tuning.calls == []


def test_compare_without_a_key_or_server_is_one_clear_line(app_factory, tmp_path):
    app = app_factory(PROVIDER="offline")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "warranty?", "lang": "en", "topic": "warranty"}) + "\n")
    result = invoke(app.test_cli_runner(), "compare", "--model", "a", "--model", "b", str(questions))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no OpenAI API key")


def test_api_errors_are_one_line_without_the_key(runner, app, app_factory, openai_config, fake_openai):
    result = invoke(runner, "status", "ftjob-nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: the OpenAI API refused (HTTP 404): Could not find fine-tune: ftjob-nope"
    )
    # nothing listens there: a network error
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = app_factory(**{**openai_config, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    result = invoke(down.test_cli_runner(), "list")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: can't reach the OpenAI API (network, or OPENAI_BASE_URL?)"


def test_compare_needs_two_models(runner, app, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "warranty?", "lang": "en", "topic": "warranty"}) + "\n")
    result = invoke(runner, "compare", "--model", "a", str(questions))
    assert result.exit_code == 2
    assert "give two models" in result.stderr


def test_compare_says_when_a_model_fails_every_answer(runner, app, fake_openai, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "warranty?", "lang": "en", "topic": "warranty"}) + "\n")
    fake_openai.by_model["missing"] = Reply(status=404, error_message="The model does not exist")
    result = invoke(runner, "compare", "--model", BASE, "--model", "missing", str(questions))
    assert result.exit_code == 1
    assert "failed answers" in result.output
    assert result.stderr.startswith("Error: missing: every answer failed (HTTP 404")
