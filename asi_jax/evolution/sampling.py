"""Choosing what the researcher builds on, as ASI-Arch does: a parent from the top-k by
fitness, references from the ranks just below (k+1 .. 50), with an exploration knob."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    top_k: int = 10  # parents come from the k fittest
    reference_rank_limit: int = 50  # references come from ranks k+1 .. this
    num_references: int = 4
    explore: float = 0.0  # probability of drawing the parent from the whole population

    def __post_init__(self):
        if self.top_k < 1 or self.num_references < 0:
            raise ValueError("sampling.top_k must be >= 1 and num_references >= 0")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"sampling.explore must be in [0, 1], got {self.explore}")


def sample(
    ranked: Sequence[T], config: SamplingConfig, rng: np.random.Generator
) -> tuple[T, list[T]]:
    """(parent, references) from `ranked`, fittest first.

    The parent is uniform over the top-k (over everything with probability `explore`); the
    references are distinct draws from ranks k+1 .. reference_rank_limit, excluding the
    parent; fewer when the population is small.
    """
    if not ranked:
        raise ValueError("cannot sample from an empty population")
    pool = len(ranked) if rng.random() < config.explore else min(config.top_k, len(ranked))
    parent_index = int(rng.integers(pool))
    candidates = [
        i
        for i in range(config.top_k, min(config.reference_rank_limit, len(ranked)))
        if i != parent_index
    ]
    count = min(config.num_references, len(candidates))
    chosen = rng.choice(candidates, size=count, replace=False) if count else []
    return ranked[parent_index], [ranked[int(i)] for i in sorted(chosen)]
