"""ASI-Arch's composite fitness, in one function.

    fitness = w_loss * s(loss) + w_bench * s(benchmark) + w_judge * (judge - 1) / 9

    s(loss)      = sigmoid(k * clip((L_base - L) / (scale * L_base), -1, 1))
    s(benchmark) = sigmoid(k * clip((B - B_base) / (scale * B_base), -1, 1))

with k = 6 and scale = 0.1 (a 10% relative gain saturates the term), each term in [0, 1],
judge the judge's score on 1-10. Baselines come from the baseline runs of the same stage.
Which figures are "loss" and "benchmark" is the task's (`Task.loss`, `Task.benchmark`).

A new term is added here alone: its weight in `FitnessConfig`, its value in `score` (which
sees both evaluations' records, their training results included), its name in
`Fitness.terms`; the database stores terms by name and the leaderboard prints them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asi_jax.agents.base import Record


@dataclasses.dataclass(frozen=True)
class FitnessConfig:
    loss_weight: float = 1.0
    benchmark_weight: float = 1.0
    judge_weight: float = 1.0
    scale: float = 0.1  # the relative gain at which a term saturates
    steepness: float = 6.0


@dataclasses.dataclass(frozen=True)
class Fitness:
    loss_term: float
    benchmark_term: float
    judge_term: float
    total: float

    @property
    def terms(self) -> dict[str, float]:
        return {"loss": self.loss_term, "benchmark": self.benchmark_term,
                "judge": self.judge_term}  # fmt: skip


def saturating_gain(relative_gain: float, config: FitnessConfig) -> float:
    """sigmoid(steepness * clip(relative_gain / scale, -1, 1)): 0.5 at no gain."""
    x = max(-1.0, min(1.0, relative_gain / config.scale))
    return 1.0 / (1.0 + math.exp(-config.steepness * x))


def fitness(
    *,
    loss: float,
    baseline_loss: float,
    benchmark: float,
    baseline_benchmark: float,
    judge_score: float,
    config: FitnessConfig = FitnessConfig(),
) -> Fitness:
    """The composite fitness of one candidate against its stage's baseline (see module doc).

    Lower loss and higher benchmark are better; judge_score is on the judge's 1-10 scale.
    A non-finite loss or benchmark (a diverged run) scores as the worst gain.
    """
    if baseline_loss <= 0 or baseline_benchmark <= 0:
        raise ValueError(
            f"baselines must be positive, got loss {baseline_loss} and benchmark "
            f"{baseline_benchmark}"
        )
    if not 1.0 <= judge_score <= 10.0:
        raise ValueError(f"judge_score must be in [1, 10], got {judge_score}")
    loss_gain = (baseline_loss - loss) / baseline_loss if math.isfinite(loss) else -math.inf
    bench_gain = (
        (benchmark - baseline_benchmark) / baseline_benchmark
        if math.isfinite(benchmark)
        else -math.inf
    )
    loss_term = saturating_gain(loss_gain, config)
    benchmark_term = saturating_gain(bench_gain, config)
    judge_term = (judge_score - 1.0) / 9.0
    total = (
        config.loss_weight * loss_term
        + config.benchmark_weight * benchmark_term
        + config.judge_weight * judge_term
    )
    return Fitness(loss_term, benchmark_term, judge_term, total)


def score(record: Record, reference: Record, judge_score: float,
          config: FitnessConfig = FitnessConfig()) -> Fitness:  # fmt: skip
    """The fitness of an evaluated or failed `record` against the stage's `reference`
    baseline: a failed run earns nothing (total 0) but keeps its terms for the record."""
    f = fitness(
        loss=record.loss if record.loss is not None else math.inf,
        baseline_loss=reference.loss,
        benchmark=record.benchmark if record.benchmark is not None else -math.inf,
        baseline_benchmark=max(reference.benchmark, 1e-9),
        judge_score=judge_score,
        config=config,
    )
    return dataclasses.replace(f, total=0.0) if record.status == "failed" else f
