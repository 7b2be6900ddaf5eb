"""The cognition store: entries, their embeddings and a ScaNN index, queried with an
analyser's problem summary.

Entries are indexed by their EXPERIMENTAL_TRIGGER_PATTERNS (with the title), as ASI-Arch
does: the question is "in which situation does this insight apply", and the analyser's
summary describes the situation the search is in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from asi_jax.cognition.embedders import Embedder
from asi_jax.cognition.entries import CognitionEntry
from asi_jax.cognition.index import IndexConfig, fingerprint, load_or_build


@dataclasses.dataclass(frozen=True)
class Retrieved:
    entry: CognitionEntry
    score: float  # cosine similarity of the query to the entry's trigger patterns


def key_text(entry: CognitionEntry) -> str:
    return f"{entry.title}. {entry.trigger_patterns}"


class CognitionStore:
    def __init__(
        self,
        entries: Sequence[CognitionEntry],
        embedder: Embedder,
        index_dir: str | Path | None = None,
        index_config: IndexConfig | None = None,
        warn: Callable[[str], None] = print,
    ):
        if not entries:
            raise ValueError("a cognition store needs at least one entry")
        self.entries, self.embedder = list(entries), embedder
        texts = [key_text(e) for e in self.entries]
        self.index = load_or_build(
            lambda: embedder.embed(texts, "document"),
            index_dir,
            fingerprint(texts, embedder.name),
            index_config or IndexConfig(),
            warn,
        )

    def retrieve(self, query: str, k: int = 5) -> list[Retrieved]:
        """The k entries whose trigger patterns best match `query`, best first."""
        ids, scores = self.index.search(self.embedder.embed([query], "query"), k)
        return [
            Retrieved(self.entries[i], float(s)) for i, s in zip(ids[0], scores[0], strict=True)
        ]
