"""The offline judge: scores novelty from embeddings and design distance. Not an AI.

score = 1 + 9 * (0.5 * (1 - s) + 0.5 * min(1, h / 3)), where s is the cosine similarity of
the candidate's motivation to the nearest earlier one (from the novelty check) and h the
number of grammar components in which its design differs from the nearest earlier design.
It cannot judge soundness; an LLM judge can.
"""

from __future__ import annotations

from collections.abc import Sequence

from asi_jax.agents.base import Record
from asi_jax.tasks.linear_attention.grammar import Design, canonical, differences


class OfflineJudge:
    name = "offline-novelty-judge"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record]) -> tuple[float, str]:  # fmt: skip
        designs = [canonical(Design.from_json(r.design)) for r in population
                   if r.design and r.id != record.id]  # fmt: skip
        if record.design and designs:
            own = canonical(Design.from_json(record.design))
            distance = min(len(differences(own, d)) for d in designs)
        else:
            distance = 3  # nothing to compare with: as novel as the scale allows
        text_novelty = 1.0 - max(0.0, min(1.0, nearest_similarity))
        design_novelty = min(1.0, distance / 3)
        score = 1.0 + 9.0 * (0.5 * text_novelty + 0.5 * design_novelty)
        rationale = (
            f"offline novelty: motivation similarity {nearest_similarity:.2f} to the "
            f"nearest earlier one, {distance} component(s) from the nearest design"
        )
        return score, rationale
