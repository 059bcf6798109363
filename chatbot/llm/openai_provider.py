"""The OpenAI provider: the official SDK's ``chat.completions`` with ``stream=True``.

Two measured costs of the SDK's typed path are skipped, while its client still does auth,
retries, base URL, timeouts and the mapping of HTTP errors to exceptions:

- It validates every request's params against its typed schema in Python before sending, about
  0.14 ms per message (0.7 s at 5,000 messages). Our messages are plain wire-format dicts already,
  so they go in ``extra_body`` (merged into the JSON body as-is) with ``messages=[]`` as the typed
  placeholder: the bytes on the wire are the same as the typed call's (tested).
- It builds a typed ``ChatCompletionChunk`` object for every streamed chunk, about 0.12 ms each
  (2.4 ms of a 20-chunk reply, with the GIL held). ``with_streaming_response`` hands us the raw
  ``data:`` lines instead, and a chunk is one ``json.loads``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import openai

from ..i18n import N_
from .base import Briefing, Event, Finish, ProviderError, Text, Usage
from .cancellable import Call, CallCancelled, OpenAI, http_client, tracked

log = logging.getLogger(__name__)


# What a customer reads: what happened and what to do. The operator's side (HTTP codes, which
# setting to check) goes to the log and the reply's metadata only.
UNAVAILABLE = N_("The assistant isn't available right now, and trying again won't help yet: we've been told.")
TOO_LONG = N_("This conversation has grown too long for the assistant. Please start a new conversation.")


def explain_failure(exc: Exception) -> ProviderError:
    """A failed call, told plainly to the customer and precisely to the operator; never the key
    or a traceback."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            N_("The assistant took too long to answer. Please try again in a moment."),
            "timeout",
            detail="timed out",
        )
    if isinstance(exc, openai.APIConnectionError):
        detail = "the model's server was unreachable"
        return ProviderError(
            N_("The assistant couldn't be reached. Please try again in a moment."),
            "connection",
            detail=detail,
        )
    if isinstance(exc, openai.AuthenticationError):
        detail = "HTTP 401: the model's server refused our credentials; check OPENAI_API_KEY"
        return ProviderError(UNAVAILABLE, "auth", detail=detail, retryable=False)
    if isinstance(exc, openai.PermissionDeniedError):
        detail = "HTTP 403: the model's server refused this request (key's permissions, region?)"
        return ProviderError(UNAVAILABLE, "permission", detail=detail, retryable=False)
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(
            "The assistant is very busy right now. Please try again in a minute.",
            "rate_limit",
            detail="HTTP 429: rate limited or out of quota",
        )
    if isinstance(exc, openai.NotFoundError):
        detail = "HTTP 404: the model was not found on its server; check CHATBOT_MODEL and OPENAI_BASE_URL"
        return ProviderError(UNAVAILABLE, "not_found", detail=detail, retryable=False)
    if isinstance(exc, openai.APIStatusError) and status is not None:
        if status >= 500:
            detail = f"HTTP {status} from the model"
            return ProviderError(
                N_("The assistant had a problem answering. Please try again in a moment."),
                "server",
                detail=detail,
            )
        code = getattr(exc, "code", None) or ""
        if "context_length" in str(code) or "context length" in str(exc).lower():
            return ProviderError(TOO_LONG, "too_long", detail=f"HTTP {status}: {code}", retryable=False)
        detail = f"HTTP {status}: the model rejected the request"
        return ProviderError(UNAVAILABLE, "rejected", detail=detail, retryable=False)
    if isinstance(exc, openai.APIError):
        return ProviderError(
            N_("The connection to the assistant broke off. Please try again in a moment."),
            "connection",
            detail="the connection broke",
        )
    return ProviderError(
        N_("Something went wrong on our side. Please try again in a moment."),
        "unexpected",
        detail=f"unexpected {type(exc).__name__}",
    )


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        timeout: float,
        max_retries: int,
        max_tokens: int | None = None,
    ):
        self.client = OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client(),  # so that a call can be cancelled at any stage
        )
        self.model = model
        self.label = model
        self.max_tokens = max_tokens
        self.client.platform_headers()  # (computed once, reading the interpreter's binary: not on a turn)

    def request_kwargs(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``create()`` arguments for a streamed reply to ``messages`` (wire format)."""
        kwargs: dict[str, Any] = dict(
            model=self.model,
            messages=[],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"messages": messages},
        )
        if self.max_tokens:
            kwargs["max_completion_tokens"] = self.max_tokens
        return kwargs

    def stream(self, messages: list[dict[str, Any]], briefing: Briefing | None = None) -> _OpenAIReply:
        """(The briefing is in the messages already, as the turn wrote it for a model.)"""
        return _OpenAIReply(self, messages)


class _OpenAIReply:
    """Iterates one streamed completion; ``close()`` from another thread ends it at any stage."""

    def __init__(self, provider: OpenAIProvider, messages: list[dict[str, Any]]):
        self._provider = provider
        self._messages = messages
        self._call = Call()
        self._pace = 0.0

    def __iter__(self) -> Iterator[Event]:
        with tracked(self._call):
            try:
                yield from self._events()
            except CallCancelled:
                return

    def _events(self) -> Iterator[Event]:
        create = self._provider.client.chat.completions.with_streaming_response.create
        try:
            self._call.check()
            manager = create(**self._provider.request_kwargs(self._messages))
            response = manager.__enter__()  # sends the request; raises on 4xx/5xx after retries
        except CallCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a plain reason
            if self._call.cancelled:
                return
            err = explain_failure(exc)
            log.warning("model call failed before the reply: %s (%s)", err.detail, type(exc).__name__)
            raise err from None
        finished = done = False
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True  # read on to the body's end: the connection then goes back to the pool
                if done:
                    continue
                chunk = json.loads(data)
                if chunk.get("error"):
                    raise ProviderError(
                        N_("The assistant had a problem answering. Please try again in a moment."),
                        "stream_error",
                        detail="the model's server reported an error mid-reply",
                    )
                if chunk.get("usage"):
                    u = chunk["usage"]
                    yield Usage(u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens"))
                for choice in (chunk.get("choices") or ())[:1]:
                    content = (choice.get("delta") or {}).get("content")
                    if content and isinstance(content, str):
                        self._call.pace = self._pace  # (the first text is read at once)
                        yield Text(content)
                    elif content:
                        raise ProviderError(
                            N_("The assistant sent a reply we couldn't read. Please try again in a moment."),
                            "bad_chunk",
                            detail="a chunk's delta.content was not a string",
                        )
                    if choice.get("finish_reason"):
                        finished = True
                        yield Finish(choice["finish_reason"])
        except (ProviderError, CallCancelled):
            raise
        except Exception as exc:  # noqa: BLE001
            if self._call.cancelled:
                return
            log.warning("model stream broke off: %s", type(exc).__name__)
            raise ProviderError(
                N_("The connection to the assistant broke off. Please try again in a moment."),
                "cut",
                detail="the stream broke off",
            ) from None
        finally:
            try:
                manager.__exit__(None, None, None)  # closes the upstream connection
            except Exception:  # noqa: BLE001
                pass
        if not finished and not self._call.cancelled:
            raise ProviderError(
                N_("The assistant's reply ended before it was finished. Please try again in a moment."),
                "cut",
                detail="the stream ended without a finish_reason",
            )

    def at_once(self) -> None:
        """The model's text comes as it comes."""

    def pace(self, seconds: float) -> None:
        """Once its text flows, read the stream at most every ``seconds``: each read takes every
        chunk that arrived meanwhile (``Call.before_read``)."""
        self._pace = seconds
        if self._call.pace:
            self._call.pace = seconds

    def close(self) -> None:
        """End the call now, from any thread, whatever stage it is at (connecting, waiting for
        headers, streaming): the upstream request (and its billing) ends at once."""
        self._call.cancel()
