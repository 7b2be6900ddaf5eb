"""Okapi BM25 over the same key texts the store embeds: the lexical baseline that the
store's retrieval is measured against (tests/test_cognition.py, tests/data/
cognition_queries.json). Tokens are the embedder's stems, so the two differ in scoring only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from asi_jax.cognition.embedders import stems_of


class BM25:
    """score(q, d) = sum over query terms t of
    idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5)) (never negative)."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self._docs = [Counter(stems_of(t)) for t in texts]
        self._lengths = np.array([sum(d.values()) for d in self._docs], np.float64)
        self._avgdl = max(float(self._lengths.mean()), 1e-9) if self._docs else 1.0
        df = Counter(term for d in self._docs for term in d)
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> np.ndarray:
        """One score per text, float64 [N]."""
        norm = self.k1 * (1 - self.b + self.b * self._lengths / self._avgdl)
        out = np.zeros(len(self._docs))
        for term in set(stems_of(query)):
            if term not in self._idf:
                continue
            tf = np.array([d.get(term, 0) for d in self._docs], np.float64)
            out += self._idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return out

    def top_k(self, query: str, k: int) -> list[int]:
        """Indices of the k best texts, best first (ties by index)."""
        return np.argsort(-self.scores(query), kind="stable")[:k].tolist()
