"""Text embedders behind one interface: `embed(texts, task) -> float32 [N, D]`, rows of unit
length, so a dot product is a cosine similarity.

- `HashingEmbedder` (offline, the default): no model and no download. A text becomes a
  sparse bag of features (lower-cased word stems, adjacent word pairs, and character
  4-grams inside words, which let "forgetting" meet "forget" and "gated" meet "gate"), each
  weighted 1 + log(count) and folded into D dimensions by a signed hash. It captures shared
  vocabulary, not meaning; good enough to match an analyser's summary to entries written in
  the same technical vocabulary, and fully deterministic.
- `GeminiEmbedder`: Gemini embeddings through google-genai (needs an API key; runs only in
  the controller, never in a candidate's sandbox).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

Task = Literal["document", "query"]


class Embedder(Protocol):
    name: str  # identifies the vector space; indexes built with another name are rebuilt

    def embed(self, texts: Sequence[str], task: Task) -> np.ndarray: ...


class EmbeddingError(RuntimeError):
    pass


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


_STOPWORDS = frozenset(
    """a an and are as at be by for from has have in into is it its of on or that the this to
    was were which with when while than then their there these they can may not no one each
    more most so such but also only over per use used uses using""".split()  # noqa: SIM905
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ness", "ies", "ied", "ed", "ly", "s")


def _stem(word: str) -> str:
    """A crude English stemmer: gates, gated, gate -> gat; forgetting, forget -> forget."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 20)
def _hash(feature: str) -> int:
    """64 bits of blake2b; cached, as a field's vocabulary repeats (a third of embed's time)."""
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


def words_of(text: str) -> list[str]:
    """Lower-cased words without stopwords: the tokens of the embedder and of BM25."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS]


def stems_of(text: str) -> list[str]:
    return [_stem(w) for w in words_of(text)]


class HashingEmbedder:
    """Signed feature hashing of stems, stem pairs and in-word character 4-grams."""

    def __init__(self, dim: int = 1024, *, pair_weight: float = 0.5, char_weight: float = 0.25):
        self.dim, self.pair_weight, self.char_weight = dim, pair_weight, char_weight
        self.name = f"hashing-v2-d{dim}-p{pair_weight:g}-c{char_weight:g}"

    def _features(self, text: str) -> Counter:
        words = words_of(text)
        stems = [_stem(w) for w in words]
        features: Counter = Counter()
        for s in stems:
            features["w:" + s] += 1.0
        for a, b in itertools.pairwise(stems):
            features[f"p:{a} {b}"] += self.pair_weight
        for w in words:
            padded = f"<{w}>"
            for i in range(len(padded) - 3):
                features["c:" + padded[i : i + 4]] += self.char_weight
        return features

    def _bucket(self, feature: str) -> tuple[int, float]:
        value = _hash(feature)
        return value % self.dim, (1.0 if (value >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str], task: Task = "document") -> np.ndarray:
        del task  # symmetric: documents and queries share one space
        out = np.zeros((len(texts), self.dim), np.float64)
        for row, text in enumerate(texts):
            for feature, count in self._features(text).items():
                column, sign = self._bucket(feature)
                weight = 1.0 + math.log(count) if count >= 1.0 else count  # sublinear counts
                out[row, column] += sign * weight
        return _normalise(out)


class GeminiEmbedder:
    """Gemini embeddings (`client.models.embed_content`), batched; documents and queries get
    their retrieval task types. `base_url` points the client elsewhere (tests, proxies)."""

    def __init__(
        self,
        model: str = "gemini-embedding-001",
        *,
        dim: int = 768,
        api_key_env: str = "GEMINI_API_KEY",
        base_url: str | None = None,
        batch_size: int = 100,
    ):
        from google import genai
        from google.genai import types

        key = os.environ.get(api_key_env)
        if not key:
            raise EmbeddingError(
                f"GeminiEmbedder needs an API key in ${api_key_env}; or use the offline "
                "embedder (cognition.embedder='hashing')"
            )
        options = types.HttpOptions(base_url=base_url) if base_url else None
        self._client, self._types = genai.Client(api_key=key, http_options=options), types
        self.model, self.dim, self.batch_size = model, dim, batch_size
        self.name = f"gemini-{model}-d{dim}"

    def embed(self, texts: Sequence[str], task: Task = "document") -> np.ndarray:
        task_type = "RETRIEVAL_DOCUMENT" if task == "document" else "RETRIEVAL_QUERY"
        config = self._types.EmbedContentConfig(task_type=task_type, output_dimensionality=self.dim)
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                response = self._client.models.embed_content(
                    model=self.model, contents=batch, config=config
                )
            except Exception as e:  # the SDK raises several types; all mean "no vectors"
                raise EmbeddingError(f"Gemini embedding request failed: {e}") from e
            embeddings = response.embeddings or []
            if len(embeddings) != len(batch):
                raise EmbeddingError(
                    f"Gemini returned {len(embeddings)} embeddings for {len(batch)} texts"
                )
            rows.extend(e.values for e in embeddings)
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return _normalise(np.asarray(rows, np.float64))


def make_embedder(kind: str, **options) -> Embedder:
    """'hashing' (offline) or 'gemini'."""
    if kind == "hashing":
        return HashingEmbedder(**options)
    if kind == "gemini":
        return GeminiEmbedder(**options)
    raise ValueError(f"unknown embedder {kind!r}; expected 'hashing' or 'gemini'")
