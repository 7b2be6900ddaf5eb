"""The novelty check rejects near-duplicate motivations, with embeddings cached in the DB."""

from asi_jax.cognition.embedders import HashingEmbedder
from asi_jax.evolution.db import Database
from asi_jax.evolution.novelty import NoveltyIndex

FIRST = (
    "Builds on deltanet. Change output_gate: none -> silu: a SiLU output gate adds "
    "input-dependent non-linearity."
)
REWORDED = (
    "Builds on deltanet. Change output_gate: none -> silu: a SiLU output gate adds "
    "input-dependent non-linearity!"
)
DIFFERENT = (
    "Builds on gated_deltanet. Change beta: sigmoid -> sigmoid2: beta in (0, 2) lets "
    "the transition reflect (negative eigenvalues)."
)


def test_near_duplicates_are_rejected_and_new_ideas_pass(tmp_path):
    db = Database(tmp_path / "e.sqlite")
    index = NoveltyIndex(HashingEmbedder(), db)
    assert index.check(FIRST, 0.95) == (True, None, 0.0)  # nothing to compare with
    index.add(FIRST)
    novel, nearest, similarity = index.check(REWORDED, 0.95)
    assert not novel and nearest == 0 and similarity > 0.95
    novel, _, similarity = index.check(DIFFERENT, 0.95)
    assert novel and similarity < 0.95


def test_embeddings_are_cached_in_the_run_database(tmp_path):
    db = Database(tmp_path / "e.sqlite")

    class Counting(HashingEmbedder):
        calls = 0

        def embed(self, texts, task="document"):
            Counting.calls += len(texts)
            return super().embed(texts, task)

    NoveltyIndex(Counting(), db, [FIRST, DIFFERENT])
    assert Counting.calls == 2
    resumed = NoveltyIndex(Counting(), db, [FIRST, DIFFERENT])  # a resumed run
    assert Counting.calls == 2
    assert resumed.nearest(FIRST)[0] == 0
