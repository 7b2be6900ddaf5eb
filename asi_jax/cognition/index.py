"""A ScaNN index over unit vectors, saved to a folder and rebuilt when its contents change.

The saved index is a cache: its files name each other relative to the folder (so a run's
folder can be reached by a relative path, or moved), and one that cannot be loaded is
rebuilt with a warning.

Small sets (up to `brute_force_limit` rows) are scored exhaustively: exact, and faster
than building anything. Larger sets are scored by anisotropic asymmetric hashing of every
row, the best candidates re-scored exactly; see `IndexConfig` for why no k-means tree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """Defaults measured by scripts/bench_cognition.py (BENCHMARKS.md). On text embeddings
    neighbours spread over many k-means leaves: searching 20% of them found 0.87 of the exact
    top 10 at 10k entries (0.94 at 100k), 60% only 0.91 at 3k; recall is bound by the leaves
    searched, not by the quantisation (re-scoring 1000 candidates instead of 100 changed
    nothing). So above `brute_force_limit` the default scans every row's anisotropic hash and
    re-scores the best `reorder` exactly: recall 1.0 at 10k and 100k, 6.9 ms a query at 100k
    against 50 ms exact (built in 139 s, once: the index is saved). A tree is used only when
    `leaves_searched_fraction` < 1 (80% found 0.99 at 10k), for corpora far larger."""

    brute_force_limit: int = 20_000  # exact below: milliseconds per query, nothing to build
    leaves_per_sqrt_rows: float = 1.0  # num_leaves = this * sqrt(N)
    leaves_searched_fraction: float = 1.0  # 1: no tree
    reorder: int = 100  # candidates re-scored exactly
    anisotropic_threshold: float = 0.2
    dims_per_block: int = 2


def fingerprint(texts: list[str], embedder_name: str) -> str:
    """Identifies what an index was built from: the embedder and every text, in order."""
    digest = hashlib.sha256(embedder_name.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


class VectorIndex:
    """Maximum-inner-product search over the rows of `vectors` [N, D]."""

    def __init__(self, vectors: np.ndarray, config: IndexConfig = IndexConfig(), *,
                 _searcher=None):  # fmt: skip
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.config = config
        self.kind = (
            "brute_force" if len(self.vectors) <= config.brute_force_limit
            else "ah" if config.leaves_searched_fraction >= 1 else "tree_ah"
        )  # fmt: skip
        self._searcher = _searcher if _searcher is not None else self._build()

    def __len__(self) -> int:
        return len(self.vectors)

    def _build(self):
        if not len(self.vectors):
            return None
        from scann import scann_ops_pybind

        n = len(self.vectors)
        builder = scann_ops_pybind.builder(self.vectors, min(10, n), "dot_product")
        if self.kind == "brute_force":
            return builder.score_brute_force().build()
        c = self.config
        if self.kind == "tree_ah":
            leaves = max(2, int(c.leaves_per_sqrt_rows * math.sqrt(n)))
            searched = max(1, round(leaves * c.leaves_searched_fraction))
            builder = builder.tree(num_leaves=leaves, num_leaves_to_search=searched,
                                   training_sample_size=n)  # fmt: skip
        return (
            builder.score_ah(
                c.dims_per_block, anisotropic_quantization_threshold=c.anisotropic_threshold
            )
            .reorder(c.reorder)
            .build()
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices int [Q, k'], scores float [Q, k']) best first, k' = min(k, N)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        ids, scores = self._searcher.search_batched(queries, final_num_neighbors=k)
        return np.asarray(ids, np.int64), np.asarray(scores, np.float32)

    def save(self, directory: str | Path, key: str) -> None:
        """Writes the searcher and a manifest naming `key` (see `fingerprint`)."""
        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        np.save(directory / "vectors.npy", self.vectors)
        if self._searcher is not None:
            (directory / "scann").mkdir()
            self._searcher.serialize(str(directory / "scann"), relative_path=True)
        manifest = {"key": key, "rows": len(self), "kind": self.kind,
                    "config": dataclasses.asdict(self.config)}  # fmt: skip
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, key: str,
             config: IndexConfig = IndexConfig()) -> VectorIndex | None:  # fmt: skip
        """The saved index if it was built from `key` with `config`, else None (the caller
        rebuilds: an index saved with other settings, such as the old low-recall tree, is not
        reused). Raises when the files are there but cannot be read."""
        directory = Path(directory)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if manifest.get("key") != key or manifest.get("config") != dataclasses.asdict(config):
            return None
        vectors = np.load(directory / "vectors.npy")
        searcher = None
        if len(vectors):
            from scann import scann_ops_pybind

            searcher = scann_ops_pybind.load_searcher(str(directory / "scann"))
        return cls(vectors, config, _searcher=searcher)


def load_or_build(vectors_fn, directory: str | Path | None, key: str,
                  config: IndexConfig = IndexConfig(),
                  warn: Callable[[str], None] = print) -> VectorIndex:  # fmt: skip
    """The index saved under `directory` for `key`, or a new one from `vectors_fn()`, saved.
    A saved index that fails to load is rebuilt; `warn` is told why."""
    if directory is not None:
        try:
            index = VectorIndex.load(directory, key, config)
        except Exception as e:  # ScaNN raises RuntimeError, numpy ValueError or OSError, ...
            warn(f"the saved index in {directory} could not be loaded ({type(e).__name__}: "
                 f"{e}); rebuilding it")  # fmt: skip
            index = None
        if index is not None:
            return index
    index = VectorIndex(vectors_fn(), config)
    if directory is not None:
        index.save(directory, key)
    return index
