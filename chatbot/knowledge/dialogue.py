"""What a customer's message is, before it is looked up: a question, or small talk (a greeting,
thanks, a goodbye), or a wish to talk to a person. Both assistants use it: the offline one to
answer briefly, the turn to leave small talk without sources and without "did this solve it?",
and to record that the customer asked for a person.

Small talk is a message made only of small-talk words ("hi there!", "ok thanks 👍", "gracias,
adiós"); a greeting with a question ("hola, mi móvil no carga") is a question.
"""

from __future__ import annotations

import re
from enum import StrEnum

from ..language import detect, words


class Intent(StrEnum):
    QUESTION = "question"
    GREETING = "greeting"
    THANKS = "thanks"
    GOODBYE = "goodbye"
    PERSON = "person"


GREETING_WORDS = {
    "en": "hi hello hey hiya howdy morning afternoon evening good there all everyone yo greetings",
    "es": "hola buenas buenos buen dia dias tardes noches saludos que tal",
}
THANKS_WORDS = {
    "en": "thanks thank you thx ty cheers great perfect awesome brilliant helped that helps lot much "
    "so very many appreciated appreciate nice cool excellent it was helpful",
    "es": "gracias muchas mil genial perfecto vale estupendo muy amable ayudado ayudo sirvio me "
    "de nada fenomenal",
}
GOODBYE_WORDS = {
    "en": "bye goodbye see you later that all for now take care have nice day night",
    "es": "adios hasta luego pronto manana chao chau nos vemos eso es todo un saludo buen dia",
}
FILLER = set(
    "ok okay oh ah and so well yes yeah sure alright right y pues bueno si claro ya vale the a s t".split()
)

_SMALL = {
    Intent.GREETING: {w for ws in GREETING_WORDS.values() for w in ws.split()},
    Intent.THANKS: {w for ws in THANKS_WORDS.values() for w in ws.split()},
    Intent.GOODBYE: {w for ws in GOODBYE_WORDS.values() for w in ws.split()},
}
# the word that makes each kind of small talk what it is (an "ok" alone is none of them)
_KEY = {
    Intent.GREETING: set("hi hello hey hiya howdy morning afternoon evening greetings".split())
    | set("hola buenas buenos saludos tal".split()),
    Intent.THANKS: set("thanks thank thx ty cheers appreciated appreciate helped helpful".split())
    | set("gracias sirvio ayudo ayudado".split()),
    Intent.GOODBYE: set("bye goodbye later".split()) | set("adios luego chao chau vemos".split()),
}
_SPANISH_SMALL = {
    "hola", "buenas", "buenos", "buen", "dia", "dias", "tardes", "noches", "gracias", "adios", "chao",
    "chau", "luego", "vemos", "saludos", "muchas", "mil", "genial", "perfecto", "vale", "tal", "sirvio",
    "ayudado", "ayudo", "manana", "pronto", "todo", "amable", "estupendo", "fenomenal", "nada",
}  # fmt: skip

_PERSON = re.compile(
    r"\b(?:"
    # English: talk/speak/chat to a person, a human, an agent...; "human please", "real person"
    r"(?:talk|speak|chat|connect|transfer|put)\w*\s+(?:me\s+)?(?:to|with|through to)\s+"
    r"(?:a|an|some|your|the|one of your)?\s*(?:real\s+|live\s+)?"
    r"(?:human|person|people|agent|someone|somebody|representative|rep|operator|staff|advisor|manager|employee)"
    r"|\b(?:a|an)\s+(?:real|live|actual)\s+(?:human|person|agent)"
    r"|^(?:human|agent|operator|representative)(?:\s+please)?$"
    r"|\bi\s+(?:want|need|would like)\s+(?:a|an)\s+(?:human|person|agent|operator)"
    # Spanish: hablar con una persona / un humano / un agente; "quiero un humano"; "persona real"
    r"|(?:habl|comunic|contact|pas|pon|atend|atiend)\w*\s+(?:con\s+)?(?:un|una|alguien|algun|alguna|el|la)?\s*"
    r"(?:persona|humano|humana|agente|operador|operadora|asesor|asesora|empleado|encargado|responsable"
    r"|de verdad|real|alguien)"
    r"|\b(?:quiero|necesito|prefiero)\s+(?:un|una)\s+(?:persona|humano|agente|operador|asesor)"
    r"|\bpersona\s+(?:real|de verdad)"
    r"|^(?:humano|agente|operador|persona)(?:\s+por\s+favor)?$"
    r")",
)


def intent(message: str) -> Intent:
    folded = " ".join(words(message))
    if _PERSON.search(folded):
        return Intent.PERSON
    ws = folded.split()
    if not ws:
        return Intent.QUESTION  # (an emoji alone, a number: let the search say it found nothing)
    small = set().union(*_SMALL.values()) | FILLER
    if len(ws) > 12 or any(w not in small for w in ws):
        return Intent.QUESTION
    for kind in (Intent.GOODBYE, Intent.THANKS, Intent.GREETING):
        if any(w in _KEY[kind] for w in ws):
            return kind
    return Intent.QUESTION


def small_talk_language(message: str) -> str | None:
    """The language of a short message of small talk ("gracias!" is Spanish, "thx" English)."""
    ws = words(message)
    if any(w in _SPANISH_SMALL for w in ws):
        return "es"
    return detect(message) or ("en" if ws else None)
