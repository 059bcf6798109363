"""Personal data out of training text: e-mail addresses, phone numbers and IMEIs become
``[email]``, ``[phone]`` and ``[imei]``.

A fine-tuned model repeats what it was trained on, so a customer's address or number must never
reach the training file. The rules mask what looks like contact data and leave the numbers that
phone support talks about every day (prices, years, storage sizes, model names such as
"iPhone 15" or "SM-S921B", opening hours such as "9:00-20:00"):

- e-mail: ``name@domain.tld``;
- IMEI: any 15-digit number, written in one run or grouped by spaces or hyphens
  ("35-209900-176148-1"). Luhn-valid or not: a mistyped IMEI is still the customer's, and nothing
  else in phone support has 15 digits;
- phone: international numbers (``+`` or ``00``, then 8 to 15 digits in groups:
  "+34 600 123 456", "+1 (555) 123-4567"), Spanish numbers (9 digits starting with 6, 7, 8 or 9,
  in one run or grouped: "600123456", "600 12 34 56", "91 123 45 67") and North American ones
  ("(555) 123-4567", "555-123-4567", "555.123.4567").

A number glued to a word, a decimal point, a colon or a slash ("A2633", "1.299", "20:00") is
never a candidate. The shop's own contact details (``SUPPORT_PHONE``, ``SUPPORT_EMAIL``,
``SUPPORT_CONTACT``) are public, not personal, and are kept as written.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

EMAIL = "email"
PHONE = "phone"
IMEI = "imei"

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)

# Where a number may start: not glued to a word, a '+', a decimal, a time or a path, and not in
# the middle of a longer grouped number ("... 123 456").
_START = r"(?<![\w+.,:/-])(?<!\d[ .-])"
# Where it must end: not glued to a word, and not followed by more of the same number.
_END = r"(?!\w)(?![.,-]?\d)"

_IMEI = re.compile(_START + r"\d(?:[ -]?\d){14}" + r"(?!\w)(?![ -]?\d)")

_PHONE = re.compile(
    _START
    + r"(?:"
    # international: + or 00, a country code, then groups (one may be in parentheses)
    + r"(?:\+|00)\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
    + r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"
    + r"|\d{3}(?P<sep>[ .-])\d{3}(?P=sep)\d{4}"
    # Spanish: 9 digits starting with 6-9, in one run or in groups of 2 or 3
    + r"|[6-9]\d{8}"
    + r"|[6-9]\d{2}(?:[ .-]\d{3}){2}"
    + r"|[6-9]\d{2}(?:[ .-]\d{2}){3}"
    + r"|[89]\d[ .-]\d{3}(?:[ .-]\d{2}){2}"
    + r")"
    + _END
)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _is_phone(candidate: str) -> bool:
    """The candidate's digit count fits its kind (an international number has 8 to 15)."""
    if candidate.startswith("+"):
        return 8 <= len(_digits(candidate)) <= 15
    if candidate.startswith("00"):
        return 10 <= len(_digits(candidate)) <= 17  # (00 + up to 15 digits)
    return True


@dataclass
class Masker:
    """Masks personal data in text and counts what it masked (by kind: email, phone, imei).

    ``keep``: text never masked, such as the shop's own phone number and address (compared by
    digits for numbers, case-insensitively for addresses)."""

    keep: Iterable[str] = ()
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        kept = [k for k in self.keep if k]
        self._kept_emails = {m.group(0).lower() for k in kept for m in _EMAIL.finditer(k)}
        self._kept_numbers = {
            _digits(m.group(0)) for k in kept for m in _PHONE.finditer(k) if _is_phone(m.group(0))
        }

    def mask(self, text: str) -> str:
        """The text with each e-mail, IMEI and phone number replaced by its placeholder."""
        text = _EMAIL.sub(self._email, text)
        text = _IMEI.sub(self._imei, text)
        return _PHONE.sub(self._phone, text)

    def take(self) -> Counter[str]:
        """What was masked since the last ``take`` (and start counting anew)."""
        counts, self.counts = self.counts, Counter()
        return counts

    def _email(self, match: re.Match[str]) -> str:
        if match.group(0).lower() in self._kept_emails:
            return match.group(0)
        self.counts[EMAIL] += 1
        return "[email]"

    def _imei(self, match: re.Match[str]) -> str:
        self.counts[IMEI] += 1
        return "[imei]"

    def _kept_number(self, digits: str) -> bool:
        """The shop's own number, with or without its country code."""
        return any(k.endswith(digits) or digits.endswith(k) for k in self._kept_numbers)

    def _phone(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if not _is_phone(found) or self._kept_number(_digits(found)):
            return found
        self.counts[PHONE] += 1
        return "[phone]"
