"""The retrieval engine's decisions, pure: which of a user's memories go into a job's prompt, and the
request that carries them.

1. `candidates`: what the stores returned for one job (vector hits, the user's facts with their
   history, the hit interactions, the session's recent turns, the profile's preferences) becomes one
   list of `Candidate`s. A hit on a superseded fact is replaced by the fact that superseded it (the
   question matched the old wording; the answer is the new value); a fact lists every older fact it
   replaced in its `supersedes`. A past interaction that states a fact is stood in for by that fact when it is
   current, and left out when a newer fact contradicts it, so a superseded value never comes back
   through the text it was said in.
2. `select`: score (similarity weighed by recency and importance), drop what is under the floor or
   a duplicate, then fill `top_k` and the token budget, best first. Preferences that shape every
   answer of a modality (answer length, language, picture style, speaking pace) are pinned: they go
   in first whatever the question.
3. `build`: the final request per modality, within the request's own limits, and the `MemoryUse`s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from infra.memory.base import Fact, Interaction
from infra.redis.sessions import Turn
from schemas import AnyRequest, ImageRequest, SpeechRequest, TextRequest, VideoRequest
from schemas.enums import Role
from schemas.events import MemoryUse
from schemas.requests import MAX_PROMPT_CHARS, ChatMessage, SpeechParams

from ..memory.facts import OPPOSITE, STYLES, find_facts, normalise, single_valued

MemoryKind = Literal["interaction", "fact", "preference", "session"]


@dataclass(frozen=True)
class Weights:
    """How a candidate's similarity is weighed. Chosen on the quality set (bench/memory_quality.py):

    - recency: a memory `half_life_s` old keeps (1 - recency/2) of its similarity; a very old one
      keeps (1 - recency). Moderate, so an old allergy still counts, but of two equally similar
      memories the newer one wins.
    - importance: a memory of importance 0 keeps (1 - importance) of its score, one of 1 all of it
      (facts found by patterns carry 0.5-0.9, interactions 0.5 unless a rating moved them).
    - floor: a similarity under it is noise for this question, whatever its recency and importance
      (all-MiniLM-L6-v2 gives unrelated short sentences about 0.0-0.2). It applies to the similarity,
      not the score, so an old memory is ranked lower but not made irrelevant by its age alone.
    """

    half_life_s: float = 30 * 86400.0
    recency: float = 0.3
    importance: float = 0.4
    floor: float = 0.2


WEIGHTS = Weights()

#: relations that shape every answer of a modality, whatever is asked (pinned into the prompt)
PINNED: dict[str, tuple[str, ...]] = {
    "text": ("answer_length", "answer_format", "answer_language", "answer_tone"),
    "image": ("image_style",),
    "video": ("video_style", "image_style"),
    "speech": ("speech_pace", "voice"),
}
#: how much of a past interaction's prompt and answer is shown (the budget decides the rest)
INTERACTION_PROMPT_CHARS = 280
INTERACTION_ANSWER_CHARS = 280
#: speaking rates that "slow" and "fast" mean
PACE_SPEED = {"slow": 0.85, "fast": 1.2}
HEADER = ("What you know about this user from earlier conversations (use it where it helps the answer;"
          " do not say that you remember it unless asked):")
_STYLE_WORDS = re.compile(r"\b(?:" + "|".join(re.escape(s) for s in STYLES) + r"|style)\b", re.I)


@dataclass(frozen=True)
class Candidate:
    id: str
    kind: MemoryKind
    text: str
    #: cosine similarity to the prompt (None: pinned preferences that were not hit)
    similarity: float | None
    created_at: float
    importance: float = 0.5
    relation: str | None = None
    object: str | None = None
    supersedes: tuple[str, ...] = ()
    pinned: bool = False


@dataclass(frozen=True)
class Chosen:
    candidate: Candidate
    score: float


@dataclass(frozen=True)
class Hit:
    """A vector hit (infra.vectors.base.VectorHit has the same fields)."""

    id: str
    kind: str
    score: float
    created_at: float


@dataclass
class Enriched:
    request: AnyRequest
    memories: list[MemoryUse] = field(default_factory=list)


def estimate_tokens(text: str) -> int:
    """Deterministic and cheap: about four characters a token in Latin scripts, one a token in others
    (CJK, emoji), which is what BPE tokenizers give within a few percent on ordinary text."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def score(c: Candidate, now: float, w: Weights = WEIGHTS) -> float:
    similarity = c.similarity if c.similarity is not None else 0.0
    age = max(0.0, now - c.created_at)
    recency = math.pow(0.5, age / w.half_life_s) if w.half_life_s > 0 else 1.0
    importance = min(1.0, max(0.0, c.importance))
    return similarity * (1.0 - w.recency + w.recency * recency) * (1.0 - w.importance + w.importance * importance)


# --- 1. candidates ---------------------------------------------------------------------------------------------

def _current_of(fact: Fact, by_id: dict[str, Fact]) -> Fact | None:
    """The fact that now stands for `fact`: itself, or the end of its chain of successors (None when a
    successor is gone, e.g. erased)."""
    seen = 0
    while fact.superseded_by is not None:
        successor = by_id.get(fact.superseded_by)
        if successor is None or seen > 32:
            return None
        fact, seen = successor, seen + 1
    return fact


def _replaced(facts: list[Fact]) -> dict[str, tuple[str, ...]]:
    """For each current fact, every older fact it replaced, directly or through facts in between,
    newest first."""
    before: dict[str, list[Fact]] = {}
    for f in facts:
        if f.superseded_by is not None:
            before.setdefault(f.superseded_by, []).append(f)
    out: dict[str, tuple[str, ...]] = {}
    for f in facts:
        if f.superseded_by is not None or f.id not in before:
            continue
        chain, todo, seen = [], list(before[f.id]), {f.id}
        while todo:
            older = todo.pop()
            if older.id in seen:
                continue
            seen.add(older.id)
            chain.append(older)
            todo += before.get(older.id, [])
        out[f.id] = tuple(o.id for o in sorted(chain, key=lambda o: (-o.created_at, o.id)))
    return out


def _fact_candidate(fact: Fact, similarity: float | None, supersedes: Iterable[str] = (),
                    pinned: bool = False) -> Candidate:
    kind: MemoryKind = "preference" if fact.kind == "preference" else "fact"
    return Candidate(fact.id, kind, fact.text, similarity, fact.created_at, fact.importance, fact.relation,
                     fact.object, tuple(supersedes), pinned)


def interaction_text(item: Interaction) -> str:
    prompt = _clip(item.prompt, INTERACTION_PROMPT_CHARS)
    if item.answer:
        return f"Earlier the user asked: {prompt} You answered: {_clip(item.answer, INTERACTION_ANSWER_CHARS)}"
    return f"Earlier the user asked: {prompt}"


def _clip(text: str, chars: int) -> str:
    text = " ".join(text[: chars * 4].split())  # a huge text is cut before it is split
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def candidates(hits: list[Hit], facts: list[Fact], interactions: list[Interaction], *, modality: str,
               turns: Sequence[Turn] = (), preferences: dict[str, str] | None = None,
               profile_at: float = 0.0, exclude_texts: Iterable[str] = ()) -> list[Candidate]:
    """Every memory that may go into the prompt (see the module docstring). `facts` are all the user's
    facts, superseded ones included; `exclude_texts` are texts the request already holds (its own
    messages), which are never repeated."""
    by_id = {f.id: f for f in facts}
    current = {f.id: f for f in facts if f.superseded_by is None}
    replaced = _replaced(facts)
    out: dict[str, Candidate] = {}

    def add(c: Candidate) -> None:
        found = out.get(c.id)
        if found is None:
            out[c.id] = c
            return
        known = [s for s in (found.similarity, c.similarity) if s is not None]
        best = max(known) if known else None
        out[c.id] = replace(found, similarity=best, supersedes=tuple(dict.fromkeys(found.supersedes + c.supersedes)),
                            pinned=found.pinned or c.pinned)

    interactions_by_id = {i.id: i for i in interactions}
    for hit in hits:
        if hit.kind == "fact":
            fact = by_id.get(hit.id)
            if fact is None:
                continue
            now_fact = _current_of(fact, by_id)
            if now_fact is None:
                continue
            add(_fact_candidate(now_fact, hit.score, replaced.get(now_fact.id, ())))
        elif hit.kind == "interaction":
            item = interactions_by_id.get(hit.id)
            if item is None:
                continue
            stated = _stated(item.prompt, current)
            if stated is None:
                continue  # it states what a newer fact contradicts
            if stated:  # the current facts it states stand in for it
                for fact in stated:
                    add(_fact_candidate(fact, hit.score, replaced.get(fact.id, ())))
                continue
            add(Candidate(item.id, "interaction", interaction_text(item), hit.score, item.created_at,
                          item.importance))
    pinned = PINNED.get(modality, ())
    for fact in current.values():
        if fact.relation in pinned:
            add(_fact_candidate(fact, None, replaced.get(fact.id, ()), pinned=True))
    for key, value in (preferences or {}).items():  # the profile's own settings, unless a fact says the same
        if key in pinned and not any(f.relation == key for f in current.values()):
            text = PROFILE_SENTENCES.get(key, "The user's preference for " + key.replace("_", " ") + ": {}.").format(value)
            add(Candidate(f"profile:{key}", "preference", text, None, profile_at, 0.8, key, value, (), True))
    excluded = {normalise(t) for t in exclude_texts}
    for i, turn in enumerate(turns):
        if not turn.text.strip() or normalise(turn.text) in excluded:
            continue
        who = "the user said" if turn.role == Role.USER.value else "you answered"
        add(Candidate(f"session:{turn.job_id or i}:{turn.role}", "session",
                      f"Earlier in this conversation {who}: {_clip(turn.text, INTERACTION_PROMPT_CHARS)}", None,
                      turn.at, 0.5))
    return list(out.values())


#: how a preference set on the profile reads in a prompt (the same sentences the fact finder writes)
PROFILE_SENTENCES = {"answer_length": "The user prefers {} answers.", "answer_format": "The user prefers answers as {}.",
                     "answer_language": "The user prefers answers in {}.", "answer_tone": "The user prefers a {} tone.",
                     "image_style": "The user likes images in a {} style.",
                     "video_style": "The user likes videos in a {} style.",
                     "speech_pace": "The user prefers {} speech.", "voice": "The user prefers the voice {}."}


def _stated(prompt: str, current: dict[str, Fact]) -> list[Fact] | None:
    """The current facts a past prompt states; None when it states one that a newer fact contradicts."""
    found = find_facts(_clip(prompt, INTERACTION_PROMPT_CHARS))  # what the prompt would show, no more
    if not found:
        return []
    out: list[Fact] = []
    for f in found:
        obj = normalise(f.object)
        for fact in current.values():
            if single_valued(f.relation) and fact.relation == f.relation:
                if normalise(fact.object) != obj:
                    return None
                out.append(fact)
            elif not single_valued(f.relation) and normalise(fact.object) == obj:
                if fact.relation == OPPOSITE.get(f.relation):
                    return None
                if fact.relation == f.relation:
                    out.append(fact)
    return out


# --- 2. select -------------------------------------------------------------------------------------------------

def _same_fact(c: Candidate) -> str:
    if c.relation is not None and c.object is not None:
        return f"{c.relation}\0{normalise(c.object)}"
    return normalise(c.text)


def select(found: list[Candidate], *, now: float, top_k: int, budget_tokens: int,
           weights: Weights = WEIGHTS) -> list[Chosen]:
    """The memories that go in, best first: pinned preferences, then by score; under the similarity floor,
    duplicates (same fact, same normalised text) and what no longer fits `top_k` or the budget are left out."""
    scored = [Chosen(c, score(c, now, weights)) for c in found]
    kept = [s for s in scored if s.candidate.pinned or (s.candidate.similarity or 0.0) >= weights.floor]
    kept.sort(key=lambda s: (not s.candidate.pinned, -s.score, -s.candidate.created_at, s.candidate.id))
    seen: set[str] = set()
    out: list[Chosen] = []
    spent = 0
    for s in kept:
        keys = {_same_fact(s.candidate), normalise(s.candidate.text)}
        if keys & seen:
            continue
        cost = estimate_tokens(s.candidate.text) + 2  # the bullet and line break
        if len(out) >= top_k or spent + cost > budget_tokens:
            continue  # a shorter one further down may still fit
        seen |= keys
        out.append(s)
        spent += cost
    return out


# --- 3. build --------------------------------------------------------------------------------------------------

def _use(s: Chosen) -> MemoryUse:
    similarity = s.candidate.similarity
    return MemoryUse(id=s.candidate.id[:128], kind=s.candidate.kind, text=s.candidate.text[:4096],
                     score=round(s.score, 4),
                     similarity=None if similarity is None else round(min(1.0, max(-1.0, similarity)), 4),
                     supersedes=list(s.candidate.supersedes))


def build(request: AnyRequest, chosen: list[Chosen], *, voices: frozenset[str] = frozenset(),
          max_messages: int = 512) -> Enriched:
    """The request with the chosen memories in it, and the memories actually used (a memory the request
    had no room for is not reported)."""
    match request:
        case TextRequest():
            return _chat(request, chosen, max_messages)
        case ImageRequest() | VideoRequest():
            return _picture(request, chosen)
        case SpeechRequest():
            return _speech(request, chosen, voices)
    return Enriched(request)


def memory_message(chosen: list[Chosen]) -> str:
    return HEADER + "\n" + "\n".join(f"- {s.candidate.text}" for s in chosen)


def _chat(request: TextRequest, chosen: list[Chosen], max_messages: int) -> Enriched:
    messages = request.params.messages
    if not chosen or len(messages) >= max_messages or request.params.raw:
        return Enriched(request)
    at = 0
    while at < len(messages) and messages[at].role is Role.SYSTEM:
        at += 1  # after the caller's own system prompt, never instead of it
    added = ChatMessage(role=Role.SYSTEM, content=memory_message(chosen))
    params = request.params.model_copy(update={"messages": [*messages[:at], added, *messages[at:]]})
    return Enriched(request.model_copy(update={"params": params}), [_use(s) for s in chosen])


def _picture(request: ImageRequest | VideoRequest, chosen: list[Chosen]) -> Enriched:
    """The style the user likes, appended, unless the prompt already asks for a style."""
    relations = PINNED[request.modality.value]
    style = next((s for r in relations for s in chosen if s.candidate.relation == r), None)
    prompt = request.params.prompt
    if style is None or _STYLE_WORDS.search(prompt):
        return Enriched(request)
    extended = f"{prompt.rstrip().rstrip('.,;')}, in a {style.candidate.object} style"
    if len(extended) > MAX_PROMPT_CHARS:
        return Enriched(request)
    params = request.params.model_copy(update={"prompt": extended})
    return Enriched(request.model_copy(update={"params": params}), [_use(style)])


def _speech(request: SpeechRequest, chosen: list[Chosen], voices: frozenset[str]) -> Enriched:
    """The preferred pace and voice, only where the caller left the default."""
    params = request.params
    defaults = SpeechParams.model_fields
    update: dict[str, object] = {}
    used: list[Chosen] = []
    for s in chosen:
        relation, value = s.candidate.relation, (s.candidate.object or "").lower()
        if relation == "speech_pace" and value in PACE_SPEED and params.speed == defaults["speed"].default \
                and "speed" not in update:
            update["speed"] = PACE_SPEED[value]
            used.append(s)
        elif relation == "voice" and value in voices and params.voice == defaults["voice"].default \
                and "voice" not in update:
            update["voice"] = value
            used.append(s)
    if not update:
        return Enriched(request)
    return Enriched(request.model_copy(update={"params": params.model_copy(update=update)}), [_use(s) for s in used])


def enrich(request: AnyRequest, found: list[Candidate], *, now: float, top_k: int, budget_tokens: int,
           weights: Weights = WEIGHTS, voices: frozenset[str] = frozenset()) -> Enriched:
    """`select` then `build`: for image, video and speech only the modality's pinned preferences count."""
    modality = request.modality.value
    if modality != "text":
        found = [c for c in found if c.relation in PINNED.get(modality, ())]
    return build(request, select(found, now=now, top_k=top_k, budget_tokens=budget_tokens, weights=weights),
                 voices=voices)
