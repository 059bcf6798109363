"""Which language a text is in (English or Spanish), cheaply: a count of common words and of
letters only Spanish uses. Shared by the offline assistant (it answers in the customer's language)
and the page (each message carries its ``lang``, so a screen reader reads it with the right voice).
"""

from __future__ import annotations

import re
import unicodedata

SPANISH_HINTS = set(
    "el la los las de del que por para con como mi mis tengo esta esto pero porque cuando donde "
    "puedo quiero necesito telefono celular movil bateria pantalla hola gracias ayuda "
    "funciona carga tiene sale hago".split()
)
ENGLISH_HINTS = set(
    "the my is it to and how can what why does phone battery screen hello thanks help not "
    "working charge i".split()
)

_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case without accents: "Batería" -> "bateria"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def _scores(text: str) -> tuple[int, int]:
    ws = words(text)
    es = sum(w in SPANISH_HINTS for w in ws) + 2 * sum(c in "ñ¿¡áéíóú" for c in text.lower())
    return es, sum(w in ENGLISH_HINTS for w in ws)


def language(text: str) -> str:
    """'es' or 'en', by a count of common words and Spanish-only letters (a tie: English)."""
    es, en = _scores(text)
    return "es" if es > en else "en"


def detect(text: str) -> str | None:
    """'es' or 'en' when the text says so (a hint word or a Spanish letter more for one than for
    the other), else None (a number, a model name, "OK"). Reads the first 2,000 characters."""
    es, en = _scores(text[:2000])
    if es == en:
        return None
    return "es" if es > en else "en"
