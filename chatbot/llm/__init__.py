"""Assistant backends behind one small interface (see ``base.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .base import Briefing, Event, Finish, Note, Provider, ProviderError, ReplyStream, Text, Usage

__all__ = [
    "Briefing",
    "Event",
    "Finish",
    "Note",
    "Provider",
    "ProviderError",
    "ReplyStream",
    "Text",
    "Usage",
    "get_provider",
    "init_app",
    "make_provider",
]


def make_provider(config: Mapping[str, Any]) -> Provider:
    """The provider the configuration asks for: OpenAI with a key (or when forced), else offline."""
    choice = config["PROVIDER"]
    if choice == "auto":
        choice = "openai" if config.get("OPENAI_API_KEY") else "offline"
    if choice == "openai":
        from .openai_provider import OpenAIProvider

        return OpenAIProvider(
            # OpenAI-compatible local servers (Ollama, llama.cpp) accept any key.
            api_key=config.get("OPENAI_API_KEY") or "not-set",
            base_url=config.get("OPENAI_BASE_URL"),
            model=config["MODEL"],
            timeout=float(config["OPENAI_TIMEOUT"]),
            max_retries=int(config["OPENAI_MAX_RETRIES"]),
            max_tokens=int(config["MAX_REPLY_TOKENS"]) or None,
        )
    from .offline import OfflineProvider

    return OfflineProvider(word_delay=float(config["OFFLINE_WORD_DELAY"]))


def init_app(app: Flask) -> None:
    app.extensions["chatbot.provider"] = make_provider(app.config)


def get_provider(app: Flask) -> Provider:
    provider: Provider = app.extensions["chatbot.provider"]
    return provider
