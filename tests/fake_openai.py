"""A small OpenAI-compatible server for the tests: real HTTP on 127.0.0.1, real wire format.

It answers ``POST /v1/chat/completions`` plainly or as a stream (``data: {...}`` chunks, then
``data: [DONE]``, with chunked transfer encoding like the real API), records every request, and
can be told, request by request, to fail with a status, stall, pace its tokens, or cut a stream.
"""

from __future__ import annotations

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
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self._lock:
            self.requests.append(
                Request(h.path, {k.lower(): v for k, v in h.headers.items()}, body, time.perf_counter())
            )
            reply = self.replies.popleft() if self.replies else self.default
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

    def _json(self, h, status: int, payload: dict, headers: dict | None = None) -> None:
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


if __name__ == "__main__":  # python -m tests.fake_openai: serve until killed (used by bench/)
    import sys

    server = FakeOpenAI()
    if len(sys.argv) > 1:
        server.default = Reply(sys.argv[1])
    print(server.url, flush=True)
    threading.Event().wait()
