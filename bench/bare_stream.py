"""The floor under ``bench/concurrency.py``: the same HTTP exchange with none of the product.

A Flask app with the page's CSRF tag, and ``POST /c`` answering an event stream: the message at
once, then one event per token as the official SDK reads it from the model, then a "complete"
event. No database, no session, no rate limits, no batching, no templates. Served by the same
gunicorn config (gevent):

    python bench/concurrency.py --app bench.bare_stream:app

What the app adds over this is what ``chatbot`` costs; what this costs is Flask, gunicorn, gevent
and the SDK on this machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx2
import openai
from flask import Flask, Response, request
from markupsafe import escape

app = Flask(__name__)
client = openai.OpenAI(
    api_key=os.environ.get("OPENAI_API_KEY", "none"),
    base_url=os.environ.get("OPENAI_BASE_URL"),
    max_retries=0,
    http_client=openai.DefaultHttpxClient(
        limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
    ),
)
PAGE = '<!doctype html><meta name="csrf-token" id="csrf-token" content="none"><p>bare</p>'


@app.get("/")
def page() -> str:
    return PAGE


@app.post("/c")
def post() -> Response:
    content = request.form.get("content", "")

    def events() -> Iterator[str]:
        yield f'data: <article data-role="user">{escape(content)}</article>\n\n'
        create = client.chat.completions.with_streaming_response.create
        with create(model="bare", messages=[{"role": "user", "content": content}], stream=True) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[5:]).get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield (
                            f'data: <hx-partial hx-target="#msg-1-tail" hx-swap="beforeend">'
                            f"{escape(text)}</hx-partial>\n\n"
                        )
        yield 'data: <article data-status="complete"></article>\n\n'

    return Response(events(), mimetype="text/event-stream")
