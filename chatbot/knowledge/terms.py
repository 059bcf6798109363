"""Search terms: what a text is made of for retrieval, in English and Spanish alike.

Text is folded (lower case, accents removed) and split into words; stop words of both languages
are dropped and each word is cut to a light stem (a few common endings off, then at most 5
letters), so "batería", "baterías" and "battery" meet their kin, and "pairing" finds "pair".
The help articles and the offline assistant's dataset are matched the same way, and so is every
question: an index stores these terms, never the raw words.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from ..language import words

STOP = frozenset(
    """
    a al algo algun alguna algunas alguno algunos ante antes aqui asi aun cada como con contra cual
    cuando de del desde donde dos el ella ellas ellos en entre era eres es esa ese eso esta estan
    estas este esto estos estoy fue ha hace hacer hay hasta la las le les lo los mas me mi mis mucho
    muy nada ni no nos o otra otro para pero poco por porque puede puedo que quien se sea ser si sin
    sobre son su sus tambien tengo tiene todo tu tus un una uno unos usted y ya yo hola gracias favor
    mio mia ahora hago debo deberia quiero necesito
    about after again all also am an and any are as at be because been before being but by can
    could did do does doing don for from get got had has have having he her here hi how i if in
    into is it its just me more my no not now of off on once only or other our out over please
    should so some such than thank thanks that the their them then there these they this those to
    too up very was we were what when where which while who why will with would you your yours
    im ive dont cant doesnt isnt wont want need like today toda todas todos hoy
    won didn doesn isn aren wasn couldn wouldn shouldn haven hasn ll ve re
    good great best give take make know tell let thing things way still even really much many well
    something anything someone anyone there also ok okay yes lot bit
    bueno buena buenos buenas dar dame decir saber cosa cosas alguien ayer manana vez veces
    mucha muchos muchas tanto tanta sea ver
    """.split()
)

# Endings taken off before the cut (longest first; the stem keeps at least 4 letters)
_ENDINGS = tuple(
    sorted(
        {
            "aciones", "iciones", "amente", "imiento", "ciones", "mente", "acion", "icion",
            "adores", "ador", "ando", "iendo", "ados", "adas", "idos", "idas", "ing", "ado", "ada",
            "ido", "ida", "ies", "ed", "es", "ar", "er", "ir", "s", "a", "o", "e",
        },
        key=len,
        reverse=True,
    )
)  # fmt: skip
_STEM = 5


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A folded word's stem: "pairing" -> "pair", "baterias" -> "bater", "charger" -> "charg"."""
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            word = word[: -len(ending)]
            if ending in ("ed", "ing") and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "dropped" -> "drop", "plugging" -> "plug"
            break
    return word[:_STEM]


def stems(text: str) -> list[str]:
    """The text's search terms, in order (stop words and one-letter words left out)."""
    return [stem(w) for w in words(text) if w not in STOP and len(w) > 1]


@dataclass(frozen=True, slots=True)
class Stats:
    """What BM25 needs to know of a collection: how many documents, how long on average, and in
    how many documents each term is (its vocabulary, for typos)."""

    documents: int
    average_length: float
    df: Mapping[str, int]
    _idf: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, documents: Iterable[Mapping[str, float]]) -> Stats:
        df: Counter[str] = Counter()
        n, total = 0, 0.0
        for terms in documents:
            n += 1
            total += sum(terms.values())
            df.update(terms.keys())
        return cls(n, total / max(n, 1), dict(df))

    def idf(self, term: str) -> float:
        """How telling a term is. A term no document has counts as one in 1% of them: a word
        the collection never uses weighs in what a question asks, but can't outweigh the rest."""
        found = self._idf.get(term)
        if found is None:
            c = self.df.get(term) or max(1.0, self.documents / 100)
            found = self._idf[term] = math.log(1 + (self.documents - c + 0.5) / (c + 0.5))
        return found


class Vocabulary:
    """The terms a collection knows, so a word typed wrong ("bluetoth", "conect") finds its kin."""

    def __init__(self, known: Iterable[str]):
        self.known = frozenset(known)
        self._by_start: dict[str, list[str]] = {}
        for term in sorted(self.known):
            self._by_start.setdefault(term[:2], []).append(term)
        self._close: dict[str, str | None] = {}

    def closest(self, term: str) -> str | None:
        if term in self.known:
            return term
        if term in self._close:
            return self._close[term]
        found = None
        if len(term) >= 4:
            # (a typo rarely hits the first two letters: "bluetoth" is "bluetooth", but
            # "ardiendo" is not "agrietado"; and only those few terms are compared)
            kin = [c for c in self._by_start.get(term[:2], ()) if abs(len(c) - len(term)) <= 1]
            close = difflib.get_close_matches(term, kin, n=1, cutoff=0.8)
            found = close[0] if close else None
        if len(self._close) < 65536:
            self._close[term] = found
        return found


K1, B = 1.2, 0.75


def bm25(query: Mapping[str, float], terms: Mapping[str, float], length: float, stats: Stats) -> float:
    """Okapi BM25 of one document (its term counts and length) for a weighted query."""
    norm = K1 * (1 - B + B * length / max(stats.average_length, 1e-9))
    score = 0.0
    for term, weight in query.items():
        tf = terms.get(term)
        if tf:
            score += weight * stats.idf(term) * tf * (K1 + 1) / (tf + norm)
    return score


def counts(
    text_terms: Iterable[str], weight: float = 1.0, into: dict[str, float] | None = None
) -> dict[str, float]:
    """Term counts (each occurrence adds ``weight``), into ``into`` when given."""
    bag = into if into is not None else {}
    for term in text_terms:
        bag[term] = bag.get(term, 0.0) + weight
    return bag


# Words customers use for the same thing, in each language (the articles can't use them all). A
# question's word brings the others of its group in, at a lower weight.
SYNONYMS = (
    # English
    "update upgrade version patch",
    "erase wipe delete format reset",
    "computer laptop pc mac desktop",
    "headphones earbuds earphones airpods headset buds",
    "broken cracked smashed shattered crack",
    "wet water liquid spilled spill soaked rain coffee",
    "hot heat overheating warm burning",
    "locate find where track location",
    "instalments installments monthly finance financing credit spread",
    "trade sell exchange swap part-exchange",
    "refund money return",
    "delivery shipping parcel package courier",
    "insurance insured protect protection claim",
    "signal reception bars network service coverage",
    "storage space memory room full",
    "price prices cost costs fee",
    "photos pictures pics images gallery",
    "backup copy",
    # Spanish
    "actualizar actualizacion version parche",
    "borrar eliminar formatear restablecer resetear",
    "ordenador computadora compu portatil pc mac",
    "auriculares cascos audifonos airpods",
    "roto rota rajado rajada agrietada grieta quebrada estrellada",
    "mojado mojada agua liquido lluvia derrame mojo empapado cafe",
    "caliente calienta calor ardiendo quema sobrecalentamiento",
    "localizar encontrar ubicacion rastrear buscar",
    "plazos cuotas financiar financiacion mensualidades",
    "entregar vender tasacion renove",
    "reembolso devolucion devolver",
    "envio paquete pedido mensajero repartidor",
    "seguro asegurado siniestro franquicia",
    "senal cobertura red rayas",
    "almacenamiento espacio memoria lleno",
    "precio precios cuesta cuestan coste",
    "fotos imagenes galeria",
    "copia respaldo respaldar",
)
SYNONYM_WEIGHT = 0.5


def _groups() -> dict[str, frozenset[str]]:
    groups: dict[str, frozenset[str]] = {}
    for line in SYNONYMS:
        group = frozenset(stem(w) for w in line.replace("-", " ").split() if w not in STOP)
        for term in group:
            groups[term] = groups.get(term, frozenset()) | group
    return groups


GROUPS = _groups()


def expand(query: Mapping[str, float], known: frozenset[str] | set[str]) -> dict[str, float]:
    """The query with its words' synonyms (those the collection knows) at a lower weight."""
    expanded = dict(query)
    for term, weight in query.items():
        for other in GROUPS.get(term, ()):
            if other not in query and other in known:
                expanded[other] = max(expanded.get(other, 0.0), weight * SYNONYM_WEIGHT)
    return expanded
