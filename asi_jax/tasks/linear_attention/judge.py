"""The offline judge: scores novelty from embeddings and design distance. Not an AI.

score = 1 + 9 * (0.5 * (1 - s) + 0.5 * min(1, h / 3)), where s is the cosine similarity of
the candidate's motivation to the nearest earlier one (from the novelty check) and h the
number of grammar components in which its design differs from the nearest earlier design
(`asi_jax.agents.grammar_search.novelty_judgement`). It cannot judge soundness; an LLM
judge can.
"""

from __future__ import annotations

from collections.abc import Sequence

from asi_jax.agents.base import Record
from asi_jax.agents.grammar_search import novelty_judgement
from asi_jax.tasks.linear_attention.researcher import GRAMMAR


class OfflineJudge:
    name = "offline-novelty-judge"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record] = ()) -> tuple[float, str]:  # fmt: skip
        return novelty_judgement(GRAMMAR, record, nearest_similarity, population)
