"""Fitness as ASI-Arch computes it, and parent / reference sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asi_jax.evolution.fitness import FitnessConfig, fitness, saturating_gain
from asi_jax.evolution.sampling import SamplingConfig, sample


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_fitness_at_the_baseline_is_half_per_term_plus_the_judge():
    f = fitness(loss=2.0, baseline_loss=2.0, benchmark=0.5, baseline_benchmark=0.5,
                judge_score=1.0)  # fmt: skip
    assert (f.loss_term, f.benchmark_term, f.judge_term) == (0.5, 0.5, 0.0)
    assert f.total == 1.0


def test_terms_follow_the_published_formula():
    f = fitness(loss=1.9, baseline_loss=2.0, benchmark=0.52, baseline_benchmark=0.5,
                judge_score=7.0)  # fmt: skip
    assert f.loss_term == pytest.approx(_sigmoid(6 * 0.05 / 0.1))  # 5% lower loss
    assert f.benchmark_term == pytest.approx(_sigmoid(6 * 0.04 / 0.1))  # 4% higher benchmark
    assert f.judge_term == pytest.approx(6 / 9)
    assert f.total == pytest.approx(f.loss_term + f.benchmark_term + f.judge_term)


def test_terms_saturate_at_the_scale_and_weights_apply():
    config = FitnessConfig()
    assert (
        saturating_gain(0.5, config) == saturating_gain(0.1, config) == pytest.approx(_sigmoid(6))
    )
    assert saturating_gain(-0.5, config) == pytest.approx(_sigmoid(-6))
    weighted = fitness(loss=2.0, baseline_loss=2.0, benchmark=0.5, baseline_benchmark=0.5,
                       judge_score=10.0, config=FitnessConfig(judge_weight=0.0))  # fmt: skip
    assert weighted.total == 1.0


def test_diverged_runs_score_worst_and_bad_inputs_fail():
    f = fitness(loss=math.nan, baseline_loss=2.0, benchmark=0.5, baseline_benchmark=0.5,
                judge_score=5.0)  # fmt: skip
    assert f.loss_term == pytest.approx(_sigmoid(-6))
    with pytest.raises(ValueError, match="judge_score must be in"):
        fitness(loss=1, baseline_loss=1, benchmark=1, baseline_benchmark=1, judge_score=0)
    with pytest.raises(ValueError, match="baselines must be positive"):
        fitness(loss=1, baseline_loss=0, benchmark=1, baseline_benchmark=1, judge_score=5)


def test_parent_from_top_k_and_references_from_the_next_ranks():
    ranked = list(range(60))  # rank i holds candidate i
    rng = np.random.default_rng(0)
    for _ in range(200):
        parent, refs = sample(ranked, SamplingConfig(), rng)
        assert parent < 10
        assert len(refs) == 4 and len(set(refs)) == 4
        assert all(10 <= r < 50 for r in refs)


def test_sampling_is_reproducible_and_handles_small_populations():
    ranked = list(range(60))
    a = [sample(ranked, SamplingConfig(), np.random.default_rng(7)) for _ in range(3)]
    b = [sample(ranked, SamplingConfig(), np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    parent, refs = sample([0, 1, 2], SamplingConfig(), np.random.default_rng(0))
    assert parent in (0, 1, 2) and refs == []
    parent, refs = sample(list(range(12)), SamplingConfig(top_k=10), np.random.default_rng(0))
    assert set(refs) == {10, 11}
    with pytest.raises(ValueError, match="empty population"):
        sample([], SamplingConfig(), np.random.default_rng(0))


def test_explore_draws_parents_beyond_the_top_k():
    ranked = list(range(60))
    rng = np.random.default_rng(1)
    parents = {sample(ranked, SamplingConfig(explore=1.0), rng)[0] for _ in range(300)}
    assert max(parents) >= 10
