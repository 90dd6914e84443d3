"""Recognizers of our own, for what presidio's defaults miss: each a pure function from text to the
spans it found. Checksums decide where one exists (Luhn for cards, mod-97 for IBANs), so a long
number that merely looks like one is left alone.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass

from schemas.redaction import Entity

from .names import FIRST_NAMES


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: Entity
    score: float

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


# --- payment cards ---------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w+])\d(?:[ -]?\d){12,18}(?!\w)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_cards(text: str) -> list[Span]:
    spans = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            spans.append(Span(m.start(), m.end(), Entity.CARD, 0.95))
    return spans


# --- IBAN -----------------------------------------------------------------------------------

#: lengths of the IBANs of countries that use them (ISO 13616 registry); unknown countries accept 15-34
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2})((?:[ -]?[A-Z0-9]){11,30})(?![A-Za-z0-9])", re.IGNORECASE)


def iban_valid(compact: str) -> bool:
    compact = compact.upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def find_ibans(text: str) -> list[Span]:
    spans = []
    for m in _IBAN.finditer(text):
        raw = m.group(0)
        # the match may run on into a following word in capitals: try it shorter, a character at a time
        for end in range(len(raw), 14, -1):
            candidate = raw[:end]
            if candidate[-1] in " -":
                continue
            if iban_valid(re.sub(r"[ -]", "", candidate)):
                spans.append(Span(m.start(), m.start() + end, Entity.IBAN, 0.95))
                break
    return spans


# --- phone numbers --------------------------------------------------------------------------

_SEP = r"[ .\-/]?"
_PHONES = [
    # international: +CC then groups, optional (0) and (area)
    re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}" + r"(?:[ .\-]?(?:\(0\)|\(\d{1,4}\)|\d{1,5})){2,6}(?!\w)"),
    # North American national: (415) 555-0123, 415-555-0123, 415.555.0123, 1-800-555-0199
    re.compile(r"(?<![\w+])(?:1[ .\-])?(?:\(\d{3}\) ?|\d{3}" + _SEP + r")\d{3}" + _SEP + r"\d{4}(?!\w)"),
    # European national with a trunk 0: 020 7946 0958, 030 12345678, 06 12 34 56 78, 0171-1234567
    re.compile(r"(?<![\w+])0\d{1,4}(?:" + _SEP + r"\d{2,8}){1,4}(?!\w)"),
]
_DATE = re.compile(r"^\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}$")


def find_phones(text: str) -> list[Span]:
    spans: list[Span] = []
    for pattern in _PHONES:
        for m in pattern.finditer(text):
            raw = m.group(0)
            digits = re.sub(r"\D", "", raw)
            if not 7 <= len(digits) <= 15 or _DATE.match(raw):
                continue
            if raw[0] == "0" and not re.search(r"[ .\-/]", raw) and len(digits) < 9:
                continue  # a bare short number with a leading zero is more often an id than a phone
            span = Span(m.start(), m.end(), Entity.PHONE, 0.7)
            if not any(span.overlaps(s) for s in spans):
                spans.append(span)
    return spans


# --- street addresses -----------------------------------------------------------------------

_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
    r"Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Close|Crescent|Row|Gardens|Hill|Walk"
)
_WORD = r"[A-Z][A-Za-z'\-]+"
_CITY_TAIL = r"(?:,\s*" + _WORD + r"(?:\s" + _WORD + r"){0,2})?(?:,?\s*[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?"
_ADDRESSES = [
    # 221B Baker Street, 1600 Pennsylvania Avenue NW, Washington, DC 20500
    re.compile(
        r"\b\d{1,5}[A-Za-z]?\s+(?:" + _WORD + r"\s+){0,3}(?:" + _STREET_TYPES + r")\b\.?"
        r"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?(?:,?\s*(?:Apt|Suite|Unit|Flat)\.?\s*#?\w+)?" + _CITY_TAIL
    ),
    # Hauptstraße 5, Lindenweg 12a, 10115 Berlin
    re.compile(
        r"\b[A-ZÄÖÜ][a-zäöüß\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer)\s+\d{1,4}[a-z]?"
        r"(?:,\s*\d{4,5}\s+" + _WORD + r")?"
    ),
    # 12 rue de la Paix, 75002 Paris; 8 via Roma
    re.compile(
        r"\b\d{1,4}(?:\s?bis|\s?ter)?,?\s+(?:rue|avenue|boulevard|place|chemin|via|calle|avenida|plaza)"
        r"(?:\s+(?:de|du|des|la|le|les|del|della|di|d')?\s*[A-Za-zÀ-ÿ'\-]+){1,4}"
        r"(?:,\s*\d{4,5}\s+" + _WORD + r")?",
        re.IGNORECASE,
    ),
    # Via Roma 10, Calle Mayor 15, Rua Augusta 274
    re.compile(r"\b(?:Via|Viale|Piazza|Corso|Calle|Avenida|Plaza|Rua|Praça|Carrer)\s+(?:(?:de|del|della|di|da|do|la)\s+)?"
               + _WORD + r"(?:\s" + _WORD + r")?\s+\d{1,4}[a-z]?\b"),
]


def find_addresses(text: str) -> list[Span]:
    spans: list[Span] = []
    for pattern in _ADDRESSES:
        for m in pattern.finditer(text):
            span = Span(m.start(), m.end(), Entity.ADDRESS, 0.75)
            if not any(span.overlaps(s) for s in spans):
                spans.append(span)
    return spans


# --- secrets --------------------------------------------------------------------------------

_KNOWN_SECRETS = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}"        # OpenAI / Anthropic style
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{22,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"                   # AWS access key ids
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"              # Slack
    r"|AIza[0-9A-Za-z_\-]{30,}"                     # Google API keys
    r"|glpat-[A-Za-z0-9_\-]{20,}"                   # GitLab
    r"|hf_[A-Za-z0-9]{30,}"                         # Hugging Face
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r")"
)
_TOKEN = re.compile(r"(?<![\w/+=\-])[A-Za-z0-9_\-+/=%]{20,}(?![\w/+=\-])")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: bits per character above which a long mixed token is taken for a secret (English words and
#: identifiers stay well below; random base64 and hex keys sit near 4-6 and 3.7-4)
_ENTROPY_BITS = 3.6


def shannon_bits(token: str) -> float:
    counts = Counter(token)
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def find_secrets(text: str) -> list[Span]:
    spans = [Span(m.start(), m.end(), Entity.SECRET, 0.95) for m in _KNOWN_SECRETS.finditer(text)]
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if _UUID.match(token):
            continue  # an identifier, not a credential
        classes = sum((any(c.islower() for c in token), any(c.isupper() for c in token),
                       any(c.isdigit() for c in token)))
        if classes >= 2 and any(c.isdigit() for c in token) and shannon_bits(token) >= _ENTROPY_BITS:
            span = Span(m.start(), m.end(), Entity.SECRET, 0.6)
            if not any(span.overlaps(s) for s in spans):
                spans.append(span)
    return spans


# --- e-mail addresses (beside presidio's, which checks the domain against the public suffix list) --

_EMAIL = re.compile(r"(?<![\w.+\-])[A-Za-z0-9][\w.+\-]*@[A-Za-z0-9][A-Za-z0-9\-]*(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b")


def find_emails(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), Entity.EMAIL, 0.9) for m in _EMAIL.finditer(text)]


# --- names (beside spaCy's) -----------------------------------------------------------------

_CAP = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+(?:[\-'][A-ZÀ-ÖØ-Þa-z][a-zß-öø-ÿ]+)?"
#: a given name from the list, then one or two capitalised words (the family name)
_FULL_NAME = re.compile(r"\b(" + "|".join(sorted(FIRST_NAMES, key=len, reverse=True)) + r")((?:\s+(?:(?:van|von|de|da|di|del|der|al|bin|el|O')\s*)?" + _CAP + r"){1,2})")
#: an honorific, then the name it introduces
_TITLED = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Dame|Madam|Herr|Frau|Mme|Mlle|Sr|Sra)\.?\s+("
                     + _CAP + r"(?:\s+" + _CAP + r")?)")
#: what people say right before their own name
_INTRODUCED = re.compile(r"\b(?:[Mm]y name is|I am|I'm|this is|[Cc]all me|[Ss]igned,?)\s+(" + _CAP + r"(?:\s+" + _CAP
                         + r")?)")
#: capitalised words that follow a given name without being a family name
_NOT_SURNAME = frozenset({"And", "The", "From", "In", "On", "At", "To", "For", "Is", "Was", "Has", "Will", "With",
                          "Street", "Road", "Avenue", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                          "Saturday", "Sunday"})
#: words after "I am" / "this is" that are not names
_NOT_NAMES = frozenset({"Not", "Sorry", "Happy", "Here", "Back", "Going", "The", "A", "An", "So", "Very", "Just",
                        "Ready", "Done", "Sure", "Looking", "Trying", "Writing", "From", "In", "At", "Also"})
#: words of diets and dishes that get taken for names ("I am Vegan.", "Beef Wellington", "Pad Thai"):
#: what people eat is a fact memory keeps (issue 12), and none of these is a common given or family name
FOOD_WORDS = frozenset({"Vegan", "Vegetarian", "Pescatarian", "Pescetarian", "Gluten", "Keto", "Paleo", "Halal",
                        "Kosher", "Lactose", "Dairy", "Allergic", "Flexitarian", "Beef", "Chicken", "Pork", "Pad",
                        "Thai", "Curry", "Tikka", "Masala", "Soup", "Salad", "Noodles", "Pizza", "Pasta", "Sushi",
                        "Ramen", "Risotto", "Lasagne", "Paella"})


def find_names(text: str) -> list[Span]:
    spans: list[Span] = []

    def add(start: int, end: int, score: float) -> None:
        span = Span(start, end, Entity.PERSON, score)
        if not any(span.overlaps(s) for s in spans):
            spans.append(span)

    for m in _TITLED.finditer(text):
        add(m.start(1), m.end(1), 0.7)
    for m in _INTRODUCED.finditer(text):
        first = m.group(1).split()[0]
        if first not in _NOT_NAMES and first.split("-")[0] not in FOOD_WORDS:
            add(m.start(1), m.end(1), 0.7)
    for m in _FULL_NAME.finditer(text):
        words = m.group(2).split()
        if words[0] in _NOT_SURNAME:
            continue
        end = m.end()
        if len(words) > 1 and words[1] in _NOT_SURNAME:
            end = m.start(2) + m.group(2).index(words[1]) - 1
        add(m.start(1), end, 0.6)
    return spans


#: every recognizer of our own, in the order their spans win a tie
FINDERS = (find_cards, find_ibans, find_secrets, find_emails, find_phones, find_addresses, find_names)


def find_all(text: str) -> list[Span]:
    """Every span our recognizers find in `text` (overlaps included; `resolve` picks among them)."""
    return [span for finder in FINDERS for span in finder(text)]


#: which entity wins when two spans overlap with the same score: checksummed ones first
_PRIORITY = {Entity.CARD: 0, Entity.IBAN: 1, Entity.SECRET: 2, Entity.EMAIL: 3, Entity.PHONE: 4,
             Entity.ADDRESS: 5, Entity.PERSON: 6}


def resolve(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans in text order: certain spans win over guesses, then longer over shorter (an
    IBAN over the card-like digits inside it), then the checksummed types. O(n log n): a prompt can
    hold thousands of finds."""
    ranked = sorted(spans, key=lambda s: (-(s.score >= 0.9), -(s.end - s.start), _PRIORITY[s.entity], -s.score,
                                          s.start))
    starts: list[int] = []  # of the kept spans, sorted; kept spans never overlap each other
    kept: list[Span] = []
    for span in ranked:
        at = bisect.bisect_left(starts, span.start)
        if at > 0 and kept[at - 1].end > span.start:
            continue  # the kept span starting before it reaches into it
        if at < len(kept) and kept[at].start < span.end:
            continue  # the kept span starting at or after it begins inside it
        starts.insert(at, span.start)
        kept.insert(at, span)
    return kept
