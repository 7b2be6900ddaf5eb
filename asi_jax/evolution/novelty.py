"""The novelty check: a new motivation too similar to an earlier one is rejected before any
compute is spent, as ASI-Arch does, with the cognition store's embedders and ScaNN index.
Embeddings are cached in the run's database, so a resumed run (or a paid embedder) does not
compute them twice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from asi_jax.cognition.embedders import Embedder
from asi_jax.cognition.index import VectorIndex
from asi_jax.evolution.db import Database


class NoveltyIndex:
    def __init__(self, embedder: Embedder, db: Database | None = None,
                 texts: Iterable[str] = ()):  # fmt: skip
        self.embedder, self.db = embedder, db
        self.texts: list[str] = []
        self._vectors = np.zeros((0, 0), np.float32)
        self._index: VectorIndex | None = None
        for text in texts:
            self.add(text)

    def embed(self, text: str) -> np.ndarray:
        """`text`'s document embedding, from the database's cache when it holds it."""
        key = hashlib.sha256(text.encode()).hexdigest()
        if self.db is not None:
            cached = self.db.cached_embedding(self.embedder.name, key)
            if cached is not None:
                return np.frombuffer(cached, np.float32)
        vector = self.embedder.embed([text], "document")[0].astype(np.float32)
        if self.db is not None:
            self.db.cache_embedding(self.embedder.name, key, vector.tobytes())
        return vector

    def nearest(self, text: str) -> tuple[int | None, float]:
        """(index of the most similar earlier text, cosine similarity); (None, 0) if none."""
        if not self.texts:
            return None, 0.0
        if self._index is None:
            self._index = VectorIndex(self._vectors)
        ids, scores = self._index.search(self.embed(text)[None], 1)
        return int(ids[0, 0]), float(scores[0, 0])

    def add(self, text: str) -> None:
        vector = self.embed(text)[None]
        self._vectors = vector if not self.texts else np.concatenate([self._vectors, vector])
        self.texts.append(text)
        self._index = None  # rebuilt on the next query

    def check(self, text: str, threshold: float) -> tuple[bool, int | None, float]:
        """(novel?, nearest index, similarity): novel when the similarity is below threshold."""
        index, similarity = self.nearest(text)
        return similarity < threshold, index, similarity
