"""Finding facts and preferences in what a user wrote (already redacted), as knowledge-graph triples.

Pure: no I/O, no model. A fact is (user, relation, object) with a kind (a stable `fact` about the
user, or a `preference` that shapes answers), a sentence for prompts and an importance. The finder
reads patterns people use to state them ("my favourite colour is teal", "I'm allergic to shellfish",
"keep answers short") rather than guessing at anything said: a missed fact costs a little
personalisation, a wrong one puts words in the user's mouth in every later prompt.

Relations are single-valued (a user has one favourite colour, one diet, one preferred answer
length: a new one replaces the old) or multi-valued (allergies, likes: a new one adds, and only its
opposite on the same object is replaced). A negation is a fact too ("no longer vegetarian",
"dislikes olives"), so it is kept with its time and source and replaces what it contradicts, as the
rest of the graph does.

Memory must never hold a value the privacy stage removed, nor anything that looks like personal
data: a fact whose object holds a placeholder (``<PERSON_1>``), digits, an address or a name our
recognizers find is dropped, not stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from infra.memory.base import Fact, FactKind
from schemas.redaction import PLACEHOLDER

from ..privacy.recognizers import find_all

#: the most characters of one text that are searched: facts are stated in a sentence, and a pasted
#: document must not cost more than a short prompt does (every pattern below is linear in this)
MAX_SCAN_CHARS = 8_000
#: an object longer than this is a clause, not a value ("I like it when you explain things ...")
MAX_OBJECT_CHARS = 48
MAX_OBJECT_WORDS = 6

#: relations of which a user has one value at a time: a new value replaces the old one
SINGLE_VALUED = frozenset({
    "diet", "occupation", "answer_length", "answer_format", "answer_language", "answer_tone",
    "image_style", "video_style", "speech_pace", "voice",
})
#: multi-valued relations and their opposites: "dislikes olives" replaces "likes olives" (and back)
OPPOSITE = {"likes": "dislikes", "dislikes": "likes", "allergic_to": "not_allergic_to",
            "not_allergic_to": "allergic_to"}
#: how much a fact matters when ranked against other memories (safety first, then how answers look)
IMPORTANCE = {"allergic_to": 0.9, "not_allergic_to": 0.7, "diet": 0.8, "answer_length": 0.7,
              "answer_format": 0.7, "answer_language": 0.8, "answer_tone": 0.6, "image_style": 0.7,
              "video_style": 0.7, "speech_pace": 0.7, "voice": 0.7, "occupation": 0.6, "likes": 0.5,
              "dislikes": 0.5}
FAVOURITE_IMPORTANCE = 0.6
#: relations that shape answers rather than state something about the user
PREFERENCE_RELATIONS = frozenset({"likes", "dislikes", "answer_length", "answer_format", "answer_language",
                                  "answer_tone", "image_style", "video_style", "speech_pace", "voice"})


#: words a question about a relation tends to use, added to the fact's text when it is embedded (not
#: to what a prompt shows): "plan my dinners" is far from "The user is vegan." in a sentence
#: embedding, near "diet, meals, food, cooking, eating"
SEARCH_HINTS = {
    "diet": "diet, meals, food, cooking, recipes, eating, dinner, menu",
    "allergic_to": "allergy, food, ingredients, eating, restaurant, recipes, snacks, avoid",
    "not_allergic_to": "allergy, food, ingredients, eating, restaurant, recipes, snacks",
    "occupation": "job, work, career, profession, workplace, colleagues, skills",
    "likes": "likes, enjoys, hobbies, music, recommendations",
    "dislikes": "dislikes, avoid, recommendations",
    "answer_length": "answers, replies, explanations, how to answer",
    "answer_format": "answers, formatting, lists",
    "answer_language": "language of answers",
    "image_style": "pictures, images, drawings, art style",
    "video_style": "videos, films, clips, style",
    "speech_pace": "speech, voice, speaking, reading aloud",
}
FAVOURITE_HINT = "favourite, preferred, choose, pick, suggest"


def search_text(relation: str, text: str) -> str:
    """What a fact is embedded as: its sentence, then the words questions about it use."""
    hint = FAVOURITE_HINT if relation.startswith("favourite_") else SEARCH_HINTS.get(relation)
    return f"{text} ({hint})" if hint else text


def single_valued(relation: str) -> bool:
    return relation in SINGLE_VALUED or relation.startswith("favourite_")


@dataclass(frozen=True)
class Found:
    """A fact found in a text, before it has an owner and an id."""

    relation: str
    object: str
    text: str
    kind: FactKind
    importance: float

    @property
    def key(self) -> str:
        """What a later statement in the same text replaces: the relation (single-valued), or the
        object within the pair of opposite relations (multi-valued)."""
        if single_valued(self.relation):
            return self.relation
        base = min(self.relation, OPPOSITE.get(self.relation, self.relation))
        return f"{base}:{normalise(self.object)}"


def normalise(value: str) -> str:
    """Case, spacing and edge punctuation folded: "Teal!" and "teal" are one object."""
    return " ".join(re.sub(r"[^\w\s'-]", " ", value.casefold()).split())


def fact_id(tenant: str, user: str, relation: str, obj: str, job: str | None) -> str:
    """Deterministic: the same fact found in the same job gets the same id, so replaying a completed
    event writes nothing new."""
    raw = "\0".join((tenant, user, relation, normalise(obj), job or ""))
    return "f" + hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def supersedes(new: Fact, current: list[Fact]) -> list[str]:
    """Ids of the facts in `current` that `new` replaces: the same single-valued relation (any value),
    or the same object under the same or the opposite multi-valued relation (restating a like
    replaces the older record of it, so one statement is kept, not two). Already-superseded facts
    and `new` itself are left alone."""
    if single_valued(new.relation):
        replaced = {new.relation}
        same_object = False
    else:
        replaced = {new.relation, OPPOSITE.get(new.relation, new.relation)}
        same_object = True
    target = normalise(new.object)
    return [f.id for f in current
            if f.id != new.id and f.superseded_by is None and f.subject == new.subject and f.relation in replaced
            and (not same_object or normalise(f.object) == target)]


# --- vocabularies --------------------------------------------------------------------------------

DIETS = ("vegetarian", "vegan", "pescatarian", "pescetarian", "gluten-free", "gluten free", "dairy-free",
         "dairy free", "lactose intolerant", "keto", "paleo", "halal", "kosher", "low-carb", "low carb")
LANGUAGES = ("english", "french", "german", "spanish", "italian", "portuguese", "dutch", "japanese", "chinese",
             "mandarin", "korean", "arabic", "russian", "hindi", "polish", "swedish", "turkish", "greek", "danish",
             "norwegian", "finnish", "czech", "ukrainian", "hebrew", "vietnamese", "thai", "indonesian")
#: looks of a picture or film: "I like watercolour" is about images, not a general like
STYLES = ("watercolour", "watercolor", "oil painting", "oil-painting", "pencil sketch", "pencil drawing", "charcoal",
          "anime", "manga", "pixel art", "photorealistic", "photo-realistic", "cinematic", "impressionist",
          "impressionism", "minimalist", "minimalism", "cartoon", "comic book", "3d render", "low poly", "low-poly",
          "film noir", "noir", "vintage", "retro", "pastel", "neon", "cyberpunk", "steampunk", "ukiyo-e",
          "art deco", "art nouveau", "surrealist", "surreal", "studio ghibli", "claymation", "stop motion",
          "black and white", "black-and-white", "sepia", "isometric", "line art", "vaporwave", "gouache",
          "documentary", "time-lapse", "timelapse", "slow motion", "slow-motion", "handheld", "drone footage")
OCCUPATIONS = ("nurse", "teacher", "doctor", "physician", "surgeon", "dentist", "pharmacist", "engineer",
               "developer", "programmer", "software engineer", "data scientist", "designer", "architect",
               "lawyer", "accountant", "student", "researcher", "scientist", "chef", "cook", "baker", "farmer",
               "journalist", "writer", "author", "editor", "photographer", "musician", "artist", "painter",
               "electrician", "plumber", "carpenter", "mechanic", "pilot", "firefighter", "police officer",
               "paramedic", "veterinarian", "vet", "librarian", "professor", "lecturer", "translator",
               "consultant", "manager", "product manager", "project manager", "analyst", "economist",
               "sales manager", "entrepreneur", "retiree", "pensioner", "therapist", "psychologist",
               "social worker", "biologist", "chemist", "physicist", "mathematician", "statistician",
               "marketing manager", "graphic designer", "web developer", "game developer", "civil engineer",
               "barista", "waiter", "waitress", "cashier", "driver", "tailor", "gardener", "florist",
               "hairdresser", "teaching assistant", "midwife", "radiologist", "optician", "accountant")
_STOP_OBJECTS = frozenset({"it", "that", "this", "them", "those", "these", "you", "him", "her", "one", "something",
                           "anything", "everything", "nothing", "stuff", "things", "me", "us", "so", "too",
                           "the idea", "the answer", "your answer", "your answers", "that idea", "it a lot"})
#: words after an object that say nothing about it ("I like jazz too", "... any more")
_TRAILING = re.compile(r"(?:\s+(?:too|as well|any ?more|now|though|really|a lot|very much|so much|please|these days"
                       r"|lately|again|nowadays|in general|generally|actually|instead|,))+\s*$", re.I)
def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_OWN_STYLE = re.compile(r"\b(?:" + _alternation(STYLES) + r")\b", re.I)


_I_AM = r"\b(?:i\s*'?\s*m|i\s+am)\s+"
_NO_LONGER = r"(?:no\s+longer|not)\s+"
_OBJ = r"([^.,;:!?\n()\"]{1,80})"

#: (pattern, builder) pairs; each builder turns a match into Found or None. Order only matters for overlaps.
_DIET = re.compile(_I_AM + r"(?:(?:a|an|strictly|fully|now|also|still)\s+)*(" + _alternation(DIETS) + r")\b", re.I)
_DIET_VERB = re.compile(r"\bi(?:\s+(?:eat|follow|keep|went|have\s+gone|have\s+been|am\s+on)|\s*'ve\s+(?:gone|been)"
                        r"|\s*'m\s+on)\s+(?:a\s+|an\s+)?(" + _alternation(DIETS) + r")\b", re.I)
_DIET_NOT = re.compile(r"(?:" + _I_AM + _NO_LONGER + r"|\bi\s+(?:stopped|quit|gave\s+up)\s+being\s+(?:a\s+|an\s+)?)"
                       r"(?:a\s+|an\s+)?(" + _alternation(DIETS) + r")\b", re.I)
_ALLERGY = re.compile(_I_AM + r"(?:(?:very|severely|also|mildly|quite|really|now)\s+)*allergic\s+to\s+" + _OBJ, re.I)
_ALLERGY_NOUN = re.compile(r"\bi\s+have\s+(?:an?\s+)?(?:(?:severe|mild|serious|bad|strong|slight)\s+)?([\w -]{2,30}?)\s+allergy\b", re.I)
_ALLERGY_NOT = re.compile(_I_AM + _NO_LONGER + r"allergic\s+to\s+" + _OBJ, re.I)
_FAVOURITE = re.compile(r"\bmy\s+(?:(?:absolute|all[- ]time|new)\s+)*(?:favou?rite|fave)\s+([a-z][a-z ]{1,30}?)"
                        r"\s+(?:is|are|has\s+always\s+been|has\s+become|would\s+be|=|:)\s+(?:now\s+)?" + _OBJ, re.I)
_FAVOURITE_AFTER = re.compile(r"\b((?:\w+\s+){0,2}\w+)\s+is\s+(?:now\s+)?my\s+(?:new\s+)?(?:favou?rite|fave)"
                              r"\s+([a-z][a-z ]{1,30}?)\b(?=\s*(?:[.,;:!?\n]|$|now|these|by))", re.I)
_LIKE = re.compile(r"\bi\s+(?:(?:really|also|just|absolutely|truly|do|still|totally|actually|genuinely)\s+)*"
                   r"(like|love|enjoy|adore|prefer)\s+" + _OBJ, re.I)
_DISLIKE = re.compile(r"\bi\s+(?:(?:really|also|just|absolutely|truly|still|totally|actually|genuinely)\s+)*"
                      r"(hate|dislike|detest|can\s*'?\s*t\s+stand|cannot\s+stand|do\s+not\s+like|don\s*'?\s*t\s+like"
                      r"|no\s+longer\s+like|don\s*'?\s*t\s+enjoy|do\s+not\s+enjoy|don\s*'?\s*t\s+care\s+for)\s+"
                      + _OBJ, re.I)
_WORK_AS = re.compile(r"\bi\s+(?:work|am\s+working|'m\s+working)\s+as\s+(?:an?\s+)?([a-z][a-z -]{1,40}?)"
                      r"(?=\s*(?:[.,;:!?\n]|$|\s(?:at|in|for|and|but|so)\b))", re.I)
_JOB_IS = re.compile(r"\bmy\s+(?:job|profession|occupation)\s+is\s+(?:an?\s+)?([a-z][a-z -]{1,40}?)"
                     r"(?=\s*(?:[.,;:!?\n]|$|\s(?:at|in|for|and|but|so)\b))", re.I)
_I_AM_JOB = re.compile(_I_AM + r"(?:an?\s+)(?:(?:retired|senior|junior|trainee|qualified|freelance)\s+)?("
                       + _alternation(OCCUPATIONS) + r")\b", re.I)
_SHORT = re.compile(r"\b(?:keep\s+(?:your\s+|the\s+)?(?:answers?|replies|responses|it|them)\s+(?:short|brief|concise)"
                    r"|(?:short|brief|concise|shorter)\s+(?:answers?|replies|responses)|be\s+(?:brief|concise)"
                    r"|(?:answer|reply|respond)\s+(?:briefly|concisely)|too\s+long|get\s+to\s+the\s+point)\b", re.I)
_DETAILED = re.compile(r"\b(?:explain\s+(?:things\s+|everything\s+|it\s+)?in\s+(?:great\s+|more\s+|full\s+)?detail"
                       r"|(?:detailed|long|longer|thorough|in-depth)\s+(?:answers?|replies|responses|explanations?)"
                       r"|go\s+into\s+(?:more\s+)?detail|(?:answer|reply|respond)\s+in\s+depth|too\s+short)\b", re.I)
_BULLETS = re.compile(r"\b(?:use\s+bullet(?:\s+points|s)?|in\s+bullet(?:\s+points|s)|as\s+bullet\s+points"
                      r"|bullet[- ]point(?:ed)?\s+(?:answers?|lists?|format)|as\s+a\s+(?:bulleted\s+)?list)\b", re.I)
_NUMBERED = re.compile(r"\b(?:numbered\s+(?:lists?|steps)|as\s+numbered\s+steps|number\s+the\s+steps)\b", re.I)
_PROSE = re.compile(r"\b(?:no\s+bullet\s+points|without\s+bullet\s+points|in\s+(?:plain\s+)?prose|full\s+sentences"
                    r"|in\s+paragraphs)\b", re.I)
_LANGUAGE = re.compile(r"\b(?:answer|reply|respond|write|talk|speak|answers|replies)\s+(?:to\s+me\s+)?"
                       r"(?:only\s+|always\s+)?in\s+(" + _alternation(LANGUAGES) + r")\b"
                       r"|\bin\s+(" + _alternation(LANGUAGES) + r")\s*,?\s+please\b", re.I)
_FORMAL = re.compile(r"\b(?:be\s+(?:more\s+)?formal|(?:a\s+)?formal\s+tone|formal\s+(?:answers?|language))\b", re.I)
_CASUAL = re.compile(r"\b(?:be\s+(?:more\s+)?(?:casual|informal)|(?:a\s+)?(?:casual|informal|friendly)\s+tone"
                     r"|(?:casual|informal)\s+(?:answers?|language))\b", re.I)
_STYLE_OF = re.compile(r"\b(?:(?:draw|paint|make|render|create|generate|do)\s+(?:my\s+|the\s+|all\s+)?"
                       r"(?:images?|pictures?|drawings?|art|illustrations?|them|everything)\s+(?:in|as)\s+(?:an?\s+)?"
                       r"|(?:images?|pictures?|illustrations?|art)\s+(?:in|as)\s+(?:an?\s+)?)(" + _alternation(STYLES) + r")\b", re.I)
_VIDEO_WORDS = re.compile(r"\b(?:videos?|films?|clips?|footage|movies?|animations?)\b", re.I)
_SLOW = re.compile(r"\b(?:speak|talk|read)\s+(?:more\s+)?(?:slowly|slower)|\bslower\s+(?:speech|voice|pace)"
                   r"|\ba\s+(?:calm|calmer|gentle|soothing|relaxed)\s+voice\b|\b(?:speak|talk)\s+calmly\b", re.I)
_FAST = re.compile(r"\b(?:speak|talk|read)\s+(?:more\s+)?(?:quickly|faster)|\bfaster\s+(?:speech|pace)", re.I)
_VOICE = re.compile(r"\buse\s+(?:the\s+)?voice\s+([a-z][a-z0-9_-]{1,30})\b|\buse\s+the\s+([a-z][a-z0-9_-]{1,30})"
                    r"\s+voice\b", re.I)
#: what starts a correction of the last value said ("my favourite colour is red, no wait, it's teal")
_CORRECTION = re.compile(r"(?:^\s*|[,;(]\s*|\s-+\s*)(?:no\s*,?\s*wait|wait\s*,?\s*no|sorry|i\s+mean|actually|correction|"
                         r"scratch\s+that|make\s+that|or\s+rather)\b[\s,:-]*", re.I)
_CORRECTED_VALUE = re.compile(r"^(?:it\s*'?\s*s|it\s+is|its|it\s+was|that\s*'?\s*s)?\s*" + _OBJ, re.I)
#: words before a value that are not part of it ("I think teal is my favourite colour")
_LEADING_FILLER = re.compile(r"^(?:(?:i|think|guess|say|suppose|well|honestly|probably|so|and|but|now|that|yes|ok|okay)"
                             r"\s+)+", re.I)
#: a liked "thing" that is really about answers or voices (the answer and speech patterns read those)
_ABOUT_ANSWERS = re.compile(r"\b(?:answers?|replies|responses|bullet|voice|speech|tone|explanations?)\b", re.I)
_LINKS = re.compile(r"\S+://\S*|\bwww\.\S+|\S+@\S+")
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")
_VOICE_NAMES_NOT = frozenset({"a", "an", "the", "my", "your", "same", "other", "different", "calm", "deep", "slow"})


def _clean(value: str) -> str | None:
    """The object as kept, or None when it is not a value we keep (placeholder, personal data, too long)."""
    value = value.strip().strip("\"'“”‘’`*_").strip()
    value = _TRAILING.sub("", value).strip()
    for cut in (" over ", " rather than ", " instead of ", " more than ", " but ", " because ", " since ", " when ", " so ", " which ", " if ", " unless ", " though "):
        at = value.lower().find(cut)
        if at > 0:
            value = value[:at].strip()
    value = re.sub(r"^(?:the\s+(?=colou?r)|(?:is|are)\s+|listening\s+to\s+)", "", value, flags=re.I).strip()
    if not value or len(value) > MAX_OBJECT_CHARS or len(value.split()) > MAX_OBJECT_WORDS:
        return None
    if normalise(value) in _STOP_OBJECTS or not normalise(value):
        return None
    if _personal(value):
        return None
    return value


def _personal(value: str) -> bool:
    """Does the value hold a placeholder or anything that looks like personal data?"""
    if "<" in value or ">" in value or PLACEHOLDER.search(value):
        return True
    if re.search(r"\d{3,}|@|https?:|www\.|/", value):
        return True
    return bool(find_all(value))


def _favourite(thing: str, value: str) -> Found | None:
    words = normalise(thing).replace("color", "colour").split()
    obj = _clean(value)
    if not words or obj is None or len(words) > 3:
        return None
    relation = "favourite_" + "_".join(words)
    return Found(relation, obj, f"The user's favourite {' '.join(words)} is {obj}.", "preference",
                 FAVOURITE_IMPORTANCE)


def _make(relation: str, obj: str, text: str) -> Found:
    kind: FactKind = "preference" if relation in PREFERENCE_RELATIONS else "fact"
    return Found(relation, obj, text, kind, IMPORTANCE.get(relation, 0.5))


def _style(value: str, segment: str) -> Found | None:
    """"I like watercolour" and "draw in watercolour": the style of the user's pictures or films."""
    m = _OWN_STYLE.search(value)
    if m is None:
        return None
    style = m.group(0).lower()
    if _VIDEO_WORDS.search(segment):
        return _make("video_style", style, f"The user likes videos in a {style} style.")
    return _make("image_style", style, f"The user likes images in a {style} style.")


def _like(verb: str, value: str, segment: str) -> Found | None:
    style = _style(value, segment)
    if style is not None:
        return style
    obj = _clean(value)
    if obj is None or _ABOUT_ANSWERS.search(obj):
        return None
    if obj.lower().startswith(("to ", "it when", "when ", "how ", "that ", "what ")):
        return None  # a clause about the conversation, not a thing the user likes
    return _make("likes", obj, f"The user likes {obj}.")


def _dislike(value: str) -> Found | None:
    obj = _clean(value)
    if obj is None or obj.lower().startswith(("to ", "it when", "when ", "how ", "that ", "what ")):
        return None
    return _make("dislikes", obj, f"The user does not like {obj}.")


def _allergies(value: str, negated: bool) -> list[Found]:
    out = []
    for part in re.split(r"\s*(?:,|\band\b|\bor\b|&)\s*", value):
        obj = _clean(re.sub(r"^(?:all\s+|most\s+|any\s+)", "", part, flags=re.I))
        if obj is None:
            continue
        if negated:
            out.append(_make("not_allergic_to", obj, f"The user is no longer allergic to {obj}."))
        else:
            out.append(_make("allergic_to", obj, f"The user is allergic to {obj}."))
    return out


def _diet(value: str, negated: bool) -> Found:
    diet = value.lower().replace(" free", "-free").replace("pescetarian", "pescatarian").replace("low carb", "low-carb")
    if negated:
        return _make("diet", f"not {diet}", f"The user is no longer {diet}.")
    return _make("diet", diet, f"The user is {diet}.")


def _occupation(value: str) -> Found | None:
    obj = _clean(value)
    if obj is None or len(obj.split()) > 4:
        return None
    obj = obj.lower()
    article = "an" if obj[0] in "aeiou" else "a"
    return _make("occupation", obj, f"The user works as {article} {obj}.")


def _in_segment(segment: str) -> list[tuple[int, Found]]:
    """Every fact stated in one clause, with where it starts (so the later of two wins)."""
    found: list[tuple[int, Found | None]] = []
    negated_spans: list[tuple[int, int]] = []
    for m in _DIET_NOT.finditer(segment):
        found.append((m.start(), _diet(m.group(1), True)))
        negated_spans.append(m.span())
    for m in _ALLERGY_NOT.finditer(segment):
        found += [(m.start(), f) for f in _allergies(m.group(1), True)]
        negated_spans.append(m.span())

    def free(m: re.Match) -> bool:
        return not any(s <= m.start() < e for s, e in negated_spans)

    for m in _DIET.finditer(segment):
        if free(m) and not re.search(r"\bnot\s*$|\bno\s+longer\s*$", segment[:m.start(1)], re.I):
            found.append((m.start(), _diet(m.group(1), False)))
    for m in _DIET_VERB.finditer(segment):
        found.append((m.start(), _diet(m.group(1), False)))
    for m in _ALLERGY.finditer(segment):
        if free(m):
            found += [(m.start(), f) for f in _allergies(m.group(1), False)]
    for m in _ALLERGY_NOUN.finditer(segment):
        found += [(m.start(), f) for f in _allergies(m.group(1), False)]
    for m in _FAVOURITE.finditer(segment):
        found.append((m.start(), _favourite(m.group(1), m.group(2))))
    for m in _FAVOURITE_AFTER.finditer(segment):
        if not _FAVOURITE.search(m.group(0)):
            value = _LEADING_FILLER.sub("", m.group(1))
            found.append((m.start(), _favourite(m.group(2), value)))
    dislikes = list(_DISLIKE.finditer(segment))
    for m in dislikes:
        style = _style(m.group(2), segment)
        found.append((m.start(), None if style is not None else _dislike(m.group(2))))
    for m in _LIKE.finditer(segment):
        if any(d.start() <= m.start() < d.end() for d in dislikes):
            continue
        prefix = segment[max(0, m.start() - 12):m.start()].lower()
        if re.search(r"(?:'d|would|you|we|they|do)\s*$", prefix) or re.search(r"\bif\s*$", prefix):
            continue  # "I'd like", "would you like", "do you think I like": requests and questions
        found.append((m.start(), _like(m.group(1), m.group(2), segment)))
    for pattern in (_WORK_AS, _JOB_IS, _I_AM_JOB):
        for m in pattern.finditer(segment):
            found.append((m.start(), _occupation(m.group(1))))
    for pattern, relation, obj, text in (
            (_SHORT, "answer_length", "short", "The user prefers short, concise answers."),
            (_DETAILED, "answer_length", "detailed", "The user prefers detailed, thorough answers."),
            (_BULLETS, "answer_format", "bullet points", "The user prefers answers as bullet points."),
            (_NUMBERED, "answer_format", "numbered lists", "The user prefers answers as numbered lists."),
            (_PROSE, "answer_format", "prose", "The user prefers answers in prose, without bullet points."),
            (_FORMAL, "answer_tone", "formal", "The user prefers a formal tone."),
            (_CASUAL, "answer_tone", "casual", "The user prefers a casual, friendly tone."),
            (_SLOW, "speech_pace", "slow", "The user prefers slow, calm speech."),
            (_FAST, "speech_pace", "fast", "The user prefers fast speech.")):
        m = pattern.search(segment)
        if m is not None:
            found.append((m.start(), _make(relation, obj, text)))
    for m in _LANGUAGE.finditer(segment):
        language = (m.group(1) or m.group(2)).capitalize()
        found.append((m.start(), _make("answer_language", language, f"The user prefers answers in {language}.")))
    for m in _STYLE_OF.finditer(segment):
        found.append((m.start(), _style(m.group(1), segment)))
    for m in _VOICE.finditer(segment):
        name = (m.group(1) or m.group(2)).lower()
        if name not in _VOICE_NAMES_NOT:
            found.append((m.start(), _make("voice", name, f"The user prefers the voice {name}.")))
    return [(at, f) for at, f in found if f is not None]


def find_facts(text: str) -> list[Found]:
    """The facts and preferences `text` states, one per key (the last said wins), in text order.

    Never raises on any string; reads at most MAX_SCAN_CHARS characters. A question is not a statement
    ("do you remember my favourite colour?"), so sentences that end in "?" are skipped."""
    if not isinstance(text, str) or not text.strip():
        return []
    text = _LINKS.sub("<link>", text[:MAX_SCAN_CHARS])  # its dots and colons would end a sentence mid-link
    ordered: list[Found] = []
    for sentence in _SENTENCE.finditer(text):
        body = sentence.group(0)
        if body.rstrip().endswith("?"):
            continue
        last: Found | None = None
        at = 0
        for segment in _segments(body):
            facts = [f for _, f in sorted(_in_segment(segment), key=lambda p: p[0])]
            if not facts and last is not None and at > 0 and single_valued(last.relation):
                corrected = _corrected(last, segment)
                if corrected is not None:
                    facts = [corrected]
            ordered += facts
            if facts:
                last = facts[-1]
            at += 1
    by_key: dict[str, Found] = {}
    for f in ordered:  # a later statement of the same key replaces the earlier one
        by_key.pop(f.key, None)
        by_key[f.key] = f
    return list(by_key.values())


def _segments(sentence: str) -> list[str]:
    """A sentence cut at its corrections: "red, no wait, it's teal" -> ["... red", "it's teal"]."""
    out, at = [], 0
    for m in _CORRECTION.finditer(sentence):
        out.append(sentence[at:m.start()])
        at = m.end()
    out.append(sentence[at:])
    return [s for s in out if s.strip()]


def _corrected(last: Found, segment: str) -> Found | None:
    """`last` with the value a bare correction gives ("it's teal", "teal")."""
    m = _CORRECTED_VALUE.match(segment.strip().rstrip(".!;"))
    if m is None:
        return None
    if last.relation.startswith("favourite_"):
        return _favourite(last.relation.removeprefix("favourite_").replace("_", " "), m.group(1))
    if last.relation == "diet":
        value = normalise(m.group(1))
        return _diet(value, False) if value in DIETS else None
    if last.relation == "occupation":
        return _occupation(re.sub(r"^an?\s+", "", m.group(1).strip(), flags=re.I))
    return None
