"""The placeholders the privacy stage puts where personal data was, and how they are read back.

A redacted value becomes ``<TYPE_N>``: its `Entity` and a number that counts values of that type
within one job, so the same value is the same placeholder everywhere in the job (every message,
prompt and negative prompt) and the model can still tell two people apart. The stage keeps the
job's mapping (placeholder -> value) encrypted in Redis; the gateway restores the values in what
it shows the requester (`restore`, and `StreamRestorer` for text that arrives in pieces).
Pure: no I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Entity(StrEnum):
    """What a placeholder stands for (the ``TYPE`` of ``<TYPE_N>``)."""

    #: a person's name
    PERSON = "PERSON"
    #: an e-mail address
    EMAIL = "EMAIL"
    #: a telephone number, international or national
    PHONE = "PHONE"
    #: a payment card number (Luhn-valid)
    CARD = "CARD"
    #: an international bank account number (mod-97-valid)
    IBAN = "IBAN"
    #: a street address
    ADDRESS = "ADDRESS"
    #: an API key, token or other high-entropy secret
    SECRET = "SECRET"


#: what a speech job's voice says instead of a value: audio cannot be restored afterwards, so it
#: says what kind of thing was there rather than reading out ``<PERSON_1>`` character by character
SPOKEN: dict[Entity, str] = {
    Entity.PERSON: "someone",
    Entity.EMAIL: "an e-mail address",
    Entity.PHONE: "a phone number",
    Entity.CARD: "a card number",
    Entity.IBAN: "an account number",
    Entity.ADDRESS: "an address",
    Entity.SECRET: "a secret",
}

PLACEHOLDER = re.compile(r"<(" + "|".join(e.value for e in Entity) + r")_([1-9][0-9]{0,5})>")
#: the longest placeholder: ``<`` + longest type + ``_`` + six digits + ``>``
_LONGEST = 1 + max(len(e.value) for e in Entity) + 1 + 6 + 1
#: what a placeholder still being written may look like (a prefix of one)
_PREFIX = re.compile(r"<(?:[A-Z]{0,7}|[A-Z]{1,7}_[0-9]{0,6})$")
_TYPE_PREFIXES = frozenset(e.value[:i] for e in Entity for i in range(len(e.value) + 1))


def placeholder(entity: Entity, number: int) -> str:
    return f"<{entity.value}_{number}>"


def restore(text: str, mapping: dict[str, str]) -> str:
    """`text` with every placeholder of `mapping` replaced by its value (others left as they are)."""
    if not mapping or "<" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def _could_grow(tail: str) -> bool:
    """True when `tail` (from a ``<`` to the end) may still become a placeholder."""
    if len(tail) >= _LONGEST or not _PREFIX.match(tail):
        return False
    name = tail[1:].split("_", 1)[0]
    if "_" in tail:
        return name in {e.value for e in Entity}
    return name in _TYPE_PREFIXES


class StreamRestorer:
    """Restores placeholders in text that arrives in pieces (token deltas).

    A piece that ends inside what may still become a placeholder (``<PER``, ``<EMAIL_1``) keeps that
    tail back until the next piece completes it or shows it cannot be one; `flush` gives back what
    is held at the end of the stream. Everything fed comes out exactly once, in order.
    """

    def __init__(self, mapping: dict[str, str]) -> None:
        self._mapping = mapping
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        self._held = ""
        cut = text.rfind("<")
        if cut != -1 and _could_grow(text[cut:]):
            text, self._held = text[:cut], text[cut:]
        return restore(text, self._mapping)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
