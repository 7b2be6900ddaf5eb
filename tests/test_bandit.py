"""The researcher's bandit: UCB1 tries every model, then favours the one that gains more
fitness per dollar; Thompson sampling is deterministic per seed; the state rebuilt from
stored rows is the live state."""

from __future__ import annotations

import numpy as np
import pytest

from asi_jax.evolution import bandit


def _row(arm: str, reward: float | None, usd: float = 0.1) -> dict:
    return {"arm": arm, "reward": reward, "cost_usd": usd}


def test_reward_is_the_gain_over_the_parent_floored_at_zero_per_dollar():
    assert bandit.reward(0.7, 0.5, usd=0.09, epsilon=0.01) == pytest.approx(2.0)
    assert bandit.reward(0.4, 0.5, usd=0.09, epsilon=0.01) == 0.0  # worse: nothing gained
    assert bandit.reward(0.6, 0.5, usd=0.0, epsilon=0.01) == pytest.approx(10.0)  # free model


def test_ucb_pulls_each_untried_arm_first_then_the_better_one():
    rng = np.random.default_rng(0)
    assert bandit.choose("ucb", bandit.arms(["a", "b"], []), rng) == "a"
    assert bandit.choose("ucb", bandit.arms(["a", "b"], [_row("a", None)]), rng) == "b"
    rows = [_row("a", 0.1), _row("b", 3.0)]
    assert bandit.choose("ucb", bandit.arms(["a", "b"], rows), rng) == "b"
    # Many poor pulls of b against a few good ones of a: a wins.
    rows = [_row("a", 2.0), _row("a", 3.0), *[_row("b", 0.0) for _ in range(6)]]
    assert bandit.choose("ucb", bandit.arms(["a", "b"], rows), rng) == "a"


def test_ucb_explores_an_arm_pulled_long_ago():
    """One bad pull of b beside many middling ones of a: b's bonus wins it another try."""
    rows = [_row("b", 0.0), *[_row("a", 0.5) for _ in range(40)]]
    assert bandit.choose("ucb", bandit.arms(["a", "b"], rows), np.random.default_rng(0)) == "b"


def test_thompson_is_deterministic_per_seed_and_favours_the_better_arm():
    rows = [*[_row("a", 0.2) for _ in range(5)], *[_row("b", 1.0) for _ in range(5)]]
    state = bandit.arms(["a", "b"], rows)
    picks = [bandit.choose("thompson", state, np.random.default_rng([7, n])) for n in range(50)]
    again = [bandit.choose("thompson", state, np.random.default_rng([7, n])) for n in range(50)]
    assert picks == again
    assert picks.count("b") > 40


def test_none_and_a_single_arm_always_pick_the_first():
    rows = [_row("a", 0.0), _row("b", 9.0)]
    assert bandit.choose("none", bandit.arms(["a", "b"], rows), np.random.default_rng(0)) == "a"
    assert bandit.choose("thompson", bandit.arms(["b"], rows), np.random.default_rng(0)) == "b"
    with pytest.raises(ValueError, match="no bandit"):
        bandit.choose("greedy", bandit.arms(["a", "b"], rows), np.random.default_rng(0))


def test_state_rebuilt_from_rows_equals_the_live_state():
    """A run that pulls and rewards as it goes holds the state the rows give on resume."""
    rng, names = np.random.default_rng(3), ["x", "y", "z"]
    value = {"x": 0.2, "y": 1.0, "z": 0.0}
    rows: list[dict] = []
    live = {n: bandit.Arm(n) for n in names}
    for _ in range(30):
        arm = bandit.choose("ucb", [live[n] for n in names], rng)
        r = value[arm] * float(rng.uniform(0.5, 1.5))
        rows.append(_row(arm, r, usd=0.05))
        a = live[arm]
        live[arm] = bandit.Arm(arm, a.pulls + 1, a.rewarded + 1, a.reward_sum + r,
                               max(a.best, r), a.usd + 0.05)  # fmt: skip
    rebuilt = bandit.arms(names, rows)
    for a, b in zip(rebuilt, (live[n] for n in names), strict=True):
        assert (a.name, a.pulls, a.rewarded) == (b.name, b.pulls, b.rewarded)
        assert a.reward_sum == pytest.approx(b.reward_sum) and a.usd == pytest.approx(b.usd)
    assert {a.name for a in rebuilt if a.pulls} == set(names)  # every arm tried
    assert max(rebuilt, key=lambda a: a.pulls).name == "y"
    board = bandit.board(names, rows, "ucb")
    assert [a["pulls"] for a in board["arms"]] == [a.pulls for a in rebuilt]
