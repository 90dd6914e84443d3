"""Metrics shared by the evaluations: Fréchet distance between feature sets (FID), word error rate,
perplexity, and BLEU and ROUGE (sacrebleu and rouge-score, the references' own implementations)."""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``features`` (n, d), in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (n >= 2, d) features, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d): FID when the features
    are Inception pool features. 0 for identical sets, up to the square root's rounding.

    With fewer samples than dimensions (200 images of 2048-d Inception features) the covariances are
    low-rank, and tr sqrt(S1 S2) is computed exactly and cheaply as the nuclear norm of the centred
    samples' cross product A B^T / sqrt((n1 - 1)(n2 - 1)) (S1 S2 = A^T A B^T B / c shares its non-zero
    eigenvalues with A B^T B A^T / c); a d x d matrix square root is taken only otherwise."""
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    diff = mu1 - mu2
    if max(len(a), len(b)) < len(mu1):
        ca = np.asarray(a, dtype=np.float64) - mu1
        cb = np.asarray(b, dtype=np.float64) - mu2
        cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
        return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross))
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # a singular product: nudge both covariances
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on lower-cased words without
    punctuation; 0 when both are empty."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else float(len(hyp))
    row = list(range(len(hyp) + 1))  # edit distance, one row at a time
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() or c == "'" else " " for c in text.lower()).split()


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per predicted token), from the summed NLL in nats."""
    if tokens <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    return math.exp(nll_sum / tokens)


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu's default 13a tokenisation, one reference per hypothesis), 0-100."""
    import sacrebleu

    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def rouge(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L (rouge-score, Porter stemming), 0-1."""
    from rouge_score import rouge_scorer

    _same_length(hypotheses, references)
    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    scores = [scorer.score(r, h) for h, r in zip(hypotheses, references)]
    return {k: float(np.mean([s[k].fmeasure for s in scores])) for k in kinds}


def _same_length(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need one hypothesis per reference, got {len(hypotheses)} and {len(references)}")
