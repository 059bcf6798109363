"""A small OpenAI-compatible server for the tests: real HTTP on 127.0.0.1, real wire format.

It answers ``POST /v1/chat/completions`` plainly or as a stream (``data: {...}`` chunks, then
``data: [DONE]``, with chunked transfer encoding like the real API), records every request, and
can be told, request by request, to fail with a status, stall, pace its tokens, or cut a stream.
``by_model`` answers by the request's ``model`` (when no reply is queued with ``will``): how a
test makes two models answer differently.

It also serves files and fine-tuning jobs (``FineTuning``, as ``fake.fine_tuning``):
``POST /v1/files`` (multipart; the bytes and purpose are kept), ``POST /v1/fine_tuning/jobs``
(the parameters are kept), ``GET /v1/fine_tuning/jobs[/{id}]``, ``POST .../{id}/cancel`` and
``GET .../{id}/events``, in OpenAI's wire format. A job follows a script: each ``GET`` of the
job moves it one stage on (status and new events), ending ``succeeded`` with
``FINE_TUNED_MODEL`` or, with ``fine_tuning.outcome = "failed"``, failed with an error.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_REPLY = "Hello from the fake model. Restart your phone, then check **Settings > Battery**."


@dataclass
class Reply:
    """How to answer one request."""

    text: str = DEFAULT_REPLY
    status: int = 200
    error_message: str = "fake failure"
    first_token_delay: float = 0.0  # seconds before the first token (after headers)
    token_delay: float = 0.0  # seconds between tokens
    header_delay: float = 0.0  # seconds before the response headers (a stalled server)
    cut_after: int | None = None  # drop the connection after this many tokens
    finish_reason: str = "stop"
    retry_after: float | None = None  # a Retry-After header on an error status
    bad_content: object = None  # sent as the first chunk's delta.content (not a string: a broken server)


@dataclass
class Request:
    path: str
    headers: dict  # names in lower case
    body: bytes
    started: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def tokens(text: str) -> list[str]:
    """Split like a tokenizer would, roughly: words with their leading spaces."""
    return re.findall(r"\s*\S+|\s+", text)


class FakeOpenAI:
    def __init__(self, tls: object = None):
        """``tls``: a ``trustme.CA`` to serve HTTPS with a certificate for 127.0.0.1 it issues."""
        self.requests: list[Request] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.by_model: dict[str, Reply] = {}  # a model's answer, when no reply is queued
        self.fine_tuning = FineTuning()
        self.connections = 0  # TCP connections accepted (a client that reuses one opens one)
        self.closed_streams = 0  # streams whose client went away before the end
        self.abandoned_requests = 0  # requests whose client went away before the headers
        self.first_token_sent: list[float] = []  # perf_counter() when each first token was written
        self.stream_done: list[float] = []  # perf_counter() when each stream's [DONE] was written
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                fake._handle(self)

            def do_GET(self):  # the model list, as `flask check` asks for it
                if fake.fine_tuning.serves(self):
                    return
                if self.path.rstrip("/") != "/v1/models":
                    return fake._json(self, 404, {"error": {"message": "not found"}})
                models = [{"id": "ft:gpt-4.1-nano:acme", "object": "model", "owned_by": "acme"}]
                fake._json(self, 200, {"object": "list", "data": models})

            def setup(self):
                super().setup()
                with fake._lock:
                    fake.connections += 1
                # no Nagle: small writes go out at once, as from a real API's front end
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def handle(self):
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the client hung up; that is what some tests are about

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # every record a chunk, as a real API's TLS front end sends them
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1").configure_cert(context)  # type: ignore[attr-defined]
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/v1"

    def will(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order (then with ``default``)."""
        self.replies.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()
        self.default = Reply()
        self.by_model.clear()
        self.fine_tuning = FineTuning()
        self.closed_streams = 0
        self.connections = 0
        self.abandoned_requests = 0
        self.first_token_sent.clear()
        self.stream_done.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- serving ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        with self._lock:
            self.requests.append(
                Request(h.path, {k.lower(): v for k, v in h.headers.items()}, body, time.perf_counter())
            )
        if self.fine_tuning.serves(h, body):
            return
        with self._lock:
            reply = self.replies.popleft() if self.replies else self._by_model(body)
        if h.path.rstrip("/") != "/v1/chat/completions":
            return self._json(h, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        if reply.header_delay and not self._wait_for_client(h, reply.header_delay):
            with self._lock:
                self.abandoned_requests += 1  # the client gave up before our headers
            h.close_connection = True
            return
        if reply.status != 200:
            kind = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(reply.status, "server_error")
            headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
            return self._json(
                h,
                reply.status,
                {"error": {"message": reply.error_message, "type": kind, "code": kind}},
                headers,
            )
        request = json.loads(body)
        model = request.get("model", "fake")
        pieces = tokens(reply.text)
        usage = {"prompt_tokens": 11 * len(request.get("messages", [])), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not request.get("stream"):
            return self._json(
                h,
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": reply.finish_reason,
                            "message": {"role": "assistant", "content": reply.text},
                        }
                    ],
                },
            )
        self._stream(h, reply, model, pieces, usage, request)

    def _by_model(self, body: bytes) -> Reply:
        if self.by_model:
            try:
                model = json.loads(body).get("model")
            except (ValueError, AttributeError):
                model = None
            if model in self.by_model:
                return self.by_model[model]
        return self.default

    @staticmethod
    def _wait_for_client(h, seconds: float) -> bool:
        """Sleep ``seconds``; False at once if the client hangs up meanwhile."""
        end = time.perf_counter() + seconds
        poller = select.poll()  # (not select(): it refuses file numbers from 1024)
        poller.register(h.connection, select.POLLIN)
        while (left := end - time.perf_counter()) > 0:
            if poller.poll(min(left, 0.02) * 1000) and h.connection.recv(1, socket.MSG_PEEK) == b"":
                return False
        return True

    @staticmethod
    def _json(h, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h, reply: Reply, model: str, pieces: list[str], usage: dict, request: dict) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(delta: dict | None, finish: str | None = None, with_usage: bool = False) -> dict:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": []
                if with_usage
                else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
                "usage": usage if with_usage else None,
            }

        def send(payload) -> None:
            line = (
                b"data: "
                + (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
                + b"\n\n"
            )
            h.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            h.wfile.flush()

        def wait(seconds: float) -> None:
            """Sleep, but notice at once if the client hangs up meanwhile (a real server would)."""
            if not FakeOpenAI._wait_for_client(h, seconds):
                raise BrokenPipeError("client closed the stream")

        try:
            send(chunk({"role": "assistant", "content": ""}))
            if reply.bad_content is not None:
                send(chunk({"content": reply.bad_content}))
            if reply.first_token_delay:
                wait(reply.first_token_delay)
            for i, piece in enumerate(pieces):
                if reply.cut_after is not None and i >= reply.cut_after:
                    h.close_connection = True
                    h.wfile.flush()
                    h.connection.shutdown(2)  # drop the line mid-stream, as a failing network does
                    return
                if i and reply.token_delay:
                    wait(reply.token_delay)
                send(chunk({"content": piece}))
                if i == 0:
                    self.first_token_sent.append(time.perf_counter())
            send(chunk({}, finish=reply.finish_reason))
            if (request.get("stream_options") or {}).get("include_usage"):
                send(chunk(None, with_usage=True))
            send(b"[DONE]")
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            self.stream_done.append(time.perf_counter())
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.closed_streams += 1
            h.close_connection = True


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    """The request's body, sent with a Content-Length or in chunks."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while size := int(h.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(h.rfile.read(size))
            h.rfile.readline()
        while h.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


# --- files and fine-tuning jobs ------------------------------------------------------------

FINE_TUNED_MODEL = "ft:gpt-4.1-nano-2025-04-14:shop::abc123"
FAILURE = {
    "code": "invalid_training_file",
    "message": "The job failed due to an invalid training file.",
    "param": "training_file",
}


def _info(message: str) -> tuple[str, str, dict | None]:
    return ("info", message, None)


def _metrics(step: int, total: int, loss: float) -> tuple[str, str, dict | None]:
    data = {"step": step, "total_steps": total, "train_loss": loss, "train_mean_token_accuracy": 0.8}
    return ("info", f"Step {step}/{total}: training loss={loss:.2f}", data)


# Each stage: the job's status and the events it brings. Stage 0 is the job's creation; each GET
# of the job moves it one stage on.
SUCCEEDED_SCRIPT: list[tuple[str, list[tuple[str, str, dict | None]]]] = [
    (
        "validating_files",
        [_info("Validating training file: {training_file}"), _info("Created fine-tuning job: {id}")],
    ),
    ("queued", [_info("Files validated, moving job to queued state")]),
    ("running", [_info("Fine-tuning job started")]),
    ("running", [_metrics(1, 3, 1.25)]),
    ("running", [_metrics(2, 3, 0.82), _metrics(3, 3, 0.51)]),
    ("succeeded", [_info("New fine-tuned model created"), _info("The job has successfully completed")]),
]
FAILED_SCRIPT: list[tuple[str, list[tuple[str, str, dict | None]]]] = [
    ("validating_files", [_info("Validating training file: {training_file}")]),
    ("running", [_info("Fine-tuning job started")]),
    ("failed", [("error", FAILURE["message"], None)]),
]


class FineTuning:
    """The files and fine-tuning part of the fake API (all its state in memory)."""

    def __init__(self) -> None:
        self.outcome = "succeeded"  # how jobs created from now on end: "succeeded" or "failed"
        self.files: dict[str, dict[str, Any]] = {}  # id -> {"bytes", "purpose", "filename", ...}
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> the job as the API shows it
        self.created: list[dict[str, Any]] = []  # each POST /fine_tuning/jobs body
        self.events: dict[str, list[dict[str, Any]]] = {}  # job id -> its events, oldest first
        self.calls: list[tuple[str, str]] = []  # (method, path) of each request served here
        self._scripts: dict[str, list] = {}
        self._stage: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def uploads(self, purpose: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.files.values() if purpose is None or f["purpose"] == purpose]

    def serves(self, h: BaseHTTPRequestHandler, body: bytes = b"") -> bool:
        """Answer the request if it is for files or fine-tuning (True), else leave it (False)."""
        url = urlsplit(h.path)
        path = url.path.rstrip("/")
        if not (path == "/v1/files" or path.startswith("/v1/fine_tuning/jobs")):
            return False
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.calls.append((h.command, path))
            status, payload = self._route(h.command, path, query, h.headers, body)
        FakeOpenAI._json(h, status, payload)
        return True

    def _route(self, method: str, path: str, query: dict, headers, body: bytes) -> tuple[int, dict]:
        parts = path.split("/")[2:]  # ["files"] or ["fine_tuning", "jobs", id?, action?]
        if parts == ["files"] and method == "POST":
            return self._upload(headers.get("Content-Type", ""), body)
        if parts[:2] == ["fine_tuning", "jobs"]:
            rest = parts[2:]
            if not rest and method == "POST":
                return self._create(json.loads(body or b"{}"))
            if not rest and method == "GET":
                jobs = sorted(self.jobs.values(), key=lambda j: j["_seq"], reverse=True)
                return 200, _page([_public(j) for j in jobs], query)
            if rest and rest[0] not in self.jobs:
                return _error(404, f"Could not find fine-tune: {rest[0]}", "fine_tune_not_found")
            if len(rest) == 1 and method == "GET":
                self._advance(rest[0])
                return 200, _public(self.jobs[rest[0]])
            if rest[1:] == ["cancel"] and method == "POST":
                return self._cancel(rest[0])
            if rest[1:] == ["events"] and method == "GET":
                return 200, _page(list(reversed(self.events[rest[0]])), query)
        return _error(404, f"Invalid URL ({method} {path})", None)

    def _upload(self, content_type: str, body: bytes) -> tuple[int, dict]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, Any] = {}
        filename = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[str(name)] = part.get_payload(decode=True)
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "Missing file or purpose", "invalid_request")
        purpose = fields["purpose"].decode()
        data = fields["file"]
        file_id = f"file-fake{next(self._ids):04d}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename or "upload",
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.files[file_id] = {**obj, "content": data}
        return 200, obj

    def _create(self, params: dict) -> tuple[int, dict]:
        self.created.append(params)
        for key in ("training_file", "validation_file"):
            if params.get(key) is not None and params[key] not in self.files:
                return _error(400, f"invalid {key}: {params[key]}", "invalid_file", key)
        if not params.get("model") or not params.get("training_file"):
            return _error(400, "model and training_file are required", "invalid_request")
        job_id = f"ftjob-fake{next(self._ids):04d}"
        method = params.get("method") or {"type": "supervised", "supervised": {}}
        hyper = (method.get(method.get("type", "supervised")) or {}).get("hyperparameters") or {}
        hyper = {**hyper, **(params.get("hyperparameters") or {})}
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": {
                "n_epochs": hyper.get("n_epochs", "auto"),
                "batch_size": hyper.get("batch_size", "auto"),
                "learning_rate_multiplier": hyper.get("learning_rate_multiplier", "auto"),
            },
            "model": params["model"],
            "organization_id": "org-fake",
            "result_files": [],
            "seed": params.get("seed") or 42,
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": params["training_file"],
            "validation_file": params.get("validation_file"),
            "suffix": params.get("suffix"),
            "estimated_finish": None,
            "integrations": [],
            "metadata": params.get("metadata"),
            "method": method,
            "_seq": next(self._ids),
        }
        self.jobs[job_id] = job
        self.events[job_id] = []
        self._scripts[job_id] = FAILED_SCRIPT if self.outcome == "failed" else SUCCEEDED_SCRIPT
        self._stage[job_id] = -1
        self._advance(job_id)
        return 200, _public(job)

    def _advance(self, job_id: str) -> None:
        job = self.jobs[job_id]
        script = self._scripts[job_id]
        if job["status"] in ("succeeded", "failed", "cancelled") or self._stage[job_id] + 1 >= len(script):
            return
        self._stage[job_id] += 1
        status, events = script[self._stage[job_id]]
        job["status"] = status
        for level, message, data in events:
            self._event(job_id, level, message.format(**job), data)
        if status == "succeeded":
            job["fine_tuned_model"] = FINE_TUNED_MODEL
            job["finished_at"] = int(time.time())
            job["trained_tokens"] = 12345
        elif status == "failed":
            job["error"] = dict(FAILURE)
            job["finished_at"] = int(time.time())

    def _event(self, job_id: str, level: str, message: str, data: dict | None) -> None:
        self.events[job_id].append(
            {
                "id": f"ftevent-fake{next(self._ids):04d}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data or {},
                "type": "metrics" if data else "message",
            }
        )

    def _cancel(self, job_id: str) -> tuple[int, dict]:
        job = self.jobs[job_id]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return _error(400, f"Job {job_id} has already {job['status']}", "invalid_request")
        job["status"] = "cancelled"
        job["finished_at"] = int(time.time())
        self._event(job_id, "info", "Fine-tuning job cancelled", None)
        return 200, _public(job)


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _page(items: list[dict], query: dict) -> dict:
    """A list as OpenAI pages it: newest first, from after the ``after`` id, ``limit`` long."""
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit") or 20)
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _error(status: int, message: str, code: str | None, param: str | None = None) -> tuple[int, dict]:
    kind = "invalid_request_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


if __name__ == "__main__":  # python -m tests.fake_openai: serve until killed (used by bench/)
    import sys

    server = FakeOpenAI()
    if len(sys.argv) > 1:
        server.default = Reply(sys.argv[1])
    print(server.url, flush=True)
    threading.Event().wait()
