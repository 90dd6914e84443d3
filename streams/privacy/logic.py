"""Redaction as pure functions: which fields of a request are prompts, and how found spans become
typed, per-job-consistent placeholders. No presidio, no Redis: the analysis is passed in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas import AnyRequest
from schemas.enums import Modality
from schemas.redaction import SPOKEN, Entity, placeholder

from .recognizers import Span, resolve

#: finds the spans of every text of a batch, one list per text, in order
Analyze = Callable[[list[str]], list[list[Span]]]


def prompt_texts(request: AnyRequest) -> list[str]:
    """Every prompt field of the request, in a fixed order (`with_texts` takes them back in it), then
    the values of the caller's `metadata` labels (free text that travels with the job too)."""
    return _param_texts(request) + [request.metadata[k] for k in sorted(request.metadata)]


def _param_texts(request: AnyRequest) -> list[str]:
    p = request.params
    if request.modality == Modality.TEXT:  # every message, then the author names that are set
        return [m.content for m in p.messages] + [m.name for m in p.messages if m.name]
    if request.modality == Modality.SPEECH:
        return [p.input]
    return [p.prompt, p.negative_prompt or ""]


def with_texts(request: AnyRequest, texts: list[str]) -> AnyRequest:
    """The request with its prompt fields and metadata values replaced by `texts` (as `prompt_texts`
    listed them)."""
    labels = sorted(request.metadata)
    if labels:
        values = texts[len(texts) - len(labels):]
        texts = texts[:len(texts) - len(labels)]
        request = request.model_copy(update={"metadata": dict(zip(labels, values))})
    p = request.params
    if request.modality == Modality.TEXT:
        names = iter(texts[len(p.messages):])
        messages = [m.model_copy(update={"content": t, "name": next(names) if m.name else None})
                    for m, t in zip(p.messages, texts)]
        params = p.model_copy(update={"messages": messages})
    elif request.modality == Modality.SPEECH:
        params = p.model_copy(update={"input": texts[0]})
    else:
        params = p.model_copy(update={"prompt": texts[0],
                                      "negative_prompt": texts[1] if p.negative_prompt is not None else None})
    return request.model_copy(update={"params": params})


@dataclass
class JobRedaction:
    """One job's placeholders: the same value gets the same placeholder in every field of the job."""

    spoken: bool = False
    #: placeholder -> original value (what the gateway restores)
    mapping: dict[str, str] = field(default_factory=dict)
    #: values replaced, per entity type (the `prepared` event reports these, never the values)
    counts: Counter = field(default_factory=Counter)
    _by_value: dict[tuple[Entity, str], str] = field(default_factory=dict)

    def replacement(self, entity: Entity, value: str) -> str:
        self.counts[entity.value] += 1
        if self.spoken:
            return SPOKEN[entity]
        key = (entity, value)
        found = self._by_value.get(key)
        if found is None:
            found = placeholder(entity, 1 + sum(1 for e, _ in self._by_value if e == entity))
            self._by_value[key] = found
            self.mapping[found] = value
        return found

    def apply(self, text: str, spans: list[Span]) -> str:
        """`text` with each span (non-overlapping, in order) replaced."""
        if not spans:
            return text
        out, at = [], 0
        for span in spans:
            out += [text[at:span.start], self.replacement(span.entity, text[span.start:span.end])]
            at = span.end
        out.append(text[at:])
        return "".join(out)


@dataclass
class Redacted:
    request: AnyRequest
    redaction: JobRedaction

    @property
    def changed(self) -> bool:
        return bool(self.redaction.counts)


def same_people(texts: list[str], spans: list[list[Span]]) -> list[list[Span]]:
    """Spans of one job with every other mention of a person found anywhere in it added: the whole
    name again, or a part of it on its own ("Thornbury" after "Margaret Thornbury"), in any field."""
    names = {t[s.start:s.end] for t, found in zip(texts, spans) for s in found if s.entity == Entity.PERSON}
    parts = {w for n in names for w in n.split() if len(w) >= 3 and w[0].isupper()} - names
    if not names:
        return spans
    wanted = re.compile("|".join(rf"\b{re.escape(v)}\b" for v in sorted(names | parts, key=len, reverse=True)))
    out = []
    for text, found in zip(texts, spans):
        extra = [Span(m.start(), m.end(), Entity.PERSON, 0.5) for m in wanted.finditer(text)]
        out.append(resolve(found + extra) if extra else found)
    return out


def redact_batch(requests: list[AnyRequest], analyze: Analyze) -> list[Redacted]:
    """Redact every prompt field of every request with one call to `analyze` for the whole batch."""
    fields = [prompt_texts(r) for r in requests]
    flat = [t for texts in fields for t in texts]
    found = analyze(flat) if flat else []
    out, at = [], 0
    for request, texts in zip(requests, fields):
        job = JobRedaction(spoken=request.modality == Modality.SPEECH)
        spans = same_people(texts, found[at:at + len(texts)])
        new = [job.apply(t, s) for t, s in zip(texts, spans)]
        at += len(texts)
        out.append(Redacted(with_texts(request, new) if job.counts else request, job))
    return out


def redact_texts(texts: list[str], analyze: Analyze) -> list[str]:
    """Free texts that are not a job's prompt (feedback) redacted as one job: placeholders, no mapping kept."""
    found = analyze(texts) if texts else []
    job = JobRedaction()
    return [job.apply(t, s) for t, s in zip(texts, same_people(texts, found))]


def overflow_message(errors: list[dict], modality: str) -> str:
    """What a client is told when its job, valid as sent, is not once its values are replaced by
    placeholders (`<EMAIL_1>` is longer than "a@b.co"): which field, by how much, what to do.

    The job fails instead of being cut to fit: a cut prompt would be run as something the client did
    not ask for, without telling them. `errors` are pydantic's, taken without their input (the text)."""
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    field = ".".join(loc[1:] if loc and loc[0] == modality else loc) or "the request"
    limit = (first.get("ctx") or {}).get("max_length")
    if first.get("type") != "string_too_long" or limit is None:
        return f"{field} is no longer valid once its personal data is replaced by placeholders ({first.get('msg')})"
    return (f"{field} is longer than its limit of {limit} characters once its personal data is replaced by"
            " placeholders (such as <EMAIL_1>, longer than a short value): shorten it, leaving room for them")
