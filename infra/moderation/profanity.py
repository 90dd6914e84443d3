"""`FastProfanity`: alt-profanity-check's probability, computed without scikit-learn's per-call overhead.

The package's `predict_prob` runs a TF-IDF vectoriser and five calibrated linear SVMs through
scikit-learn, which costs milliseconds per call however short the text (input validation, sparse
matrix construction, five estimator calls). The model itself is small: a vocabulary of words with
their IDF weights, and for each of the five SVMs a weight per word, an intercept and a sigmoid
(a, b). This class loads those numbers from the package's own files once and applies them directly
(word counts -> TF-IDF -> L2 norm -> dot product -> sigmoid -> mean of the five), which gives the same
probability (tests/unit/infra/moderation/test_profanity.py checks it against the package on the
labelled set) in tens of microseconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np


class FastProfanity:
    """Callable like `profanity_check.predict_prob`: texts -> probability each is profane."""

    def __init__(self) -> None:
        from profanity_check import profanity_check as package  # the `moderation` extra

        vectorizer, model = package.vectorizer, package.model
        params = vectorizer.get_params()
        if (params["analyzer"] != "word" or tuple(params["ngram_range"]) != (1, 1) or params["norm"] != "l2"
                or params["sublinear_tf"] or params["binary"] or not params["lowercase"]
                or params["preprocessor"] is not None or params["tokenizer"] is not None
                or getattr(model, "method", "sigmoid") != "sigmoid"):
            raise ValueError("alt-profanity-check's model is not the word TF-IDF + sigmoid-calibrated linear model"
                             " FastProfanity reimplements; use profanity_check.predict_prob")
        self._token = re.compile(params["token_pattern"])
        #: stop words never reach the vocabulary, so a lookup drops them as the vectoriser does
        self._index: dict[str, int] = dict(vectorizer.vocabulary_)
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        members = model.calibrated_classifiers_
        #: (words, models): each model's weight per word, scaled by the word's IDF
        self._weights = np.stack([m.estimator.coef_[0] for m in members], axis=1) * self._idf[:, None]
        self._intercepts = np.array([m.estimator.intercept_[0] for m in members])
        self._a = np.array([m.calibrators[0].a_ for m in members])
        self._b = np.array([m.calibrators[0].b_ for m in members])
        self._positive = list(model.classes_).index(1)
        #: the vectoriser's stop words (everyday words it never scores)
        self.stop_words = frozenset(vectorizer.get_stop_words() or ())

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return [self.one(t) for t in texts]

    def one(self, text: str) -> float:
        counts = Counter(i for w in self._token.findall(text.lower()) if (i := self._index.get(w)) is not None)
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = tf * self._idf[idx]
            norm = math.sqrt(float(values @ values))
            decision = (tf @ self._weights[idx]) / norm + self._intercepts
        else:
            decision = self._intercepts
        # sklearn's _SigmoidCalibration: p = 1 / (1 + exp(a * f + b)); binary: the positive class's column
        positive = 1.0 / (1.0 + np.exp(self._a * decision + self._b))
        p = positive if self._positive == 1 else 1.0 - positive
        return float(p.mean())

    def single_words(self) -> dict[str, float]:
        """Every vocabulary word with its probability as a text of its own (one word: its TF-IDF vector
        is 1 at that word, so each model's decision is its weight plus the intercept)."""
        words = list(self._index)
        idx = np.fromiter(self._index.values(), dtype=np.intp, count=len(words))
        decision = self._weights[idx] / self._idf[idx][:, None] + self._intercepts
        positive = 1.0 / (1.0 + np.exp(self._a * decision + self._b))
        p = (positive if self._positive == 1 else 1.0 - positive).mean(axis=1)
        return dict(zip(words, p.tolist()))
