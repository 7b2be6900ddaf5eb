"""Which model the researcher asks for each proposal: a multi-armed bandit over the endpoints
of `llm.roles.researcher.models` (its arms), rewarded in fitness gained per dollar.

A proposal's reward, once its candidate is scored in exploration, is

    max(0, fitness - parent's fitness) / (dollars of its researcher calls + epsilon)

floored at 0 rather than squashed: a worse child teaches the same as a failed one (nothing
gained), and a squashing function would pay half its range for no gain at all, drowning
the per-dollar signal. Failed candidates, rejected proposals (duplicates, refused replies)
and proposals that got no answer earn 0. Rewards have no natural scale (a free local model's
gain is divided by epsilon alone), so both rules read them divided by the largest reward
seen. The bandit's state is a pure function of the stored pulls (the database's `bandit`
table): a resumed run recomputes it, and a choice depends only on those rows and the
generator the controller seeds from (run seed, proposals tried).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Arm:
    """One model's record: pulls (proposals made with it, rewarded or not yet), the rewarded
    ones' sum and largest reward, and the dollars its researcher calls cost."""

    name: str
    pulls: int = 0
    rewarded: int = 0
    reward_sum: float = 0.0
    best: float = 0.0
    usd: float = 0.0

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewarded if self.rewarded else None


def reward(fitness: float, parent_fitness: float, usd: float, epsilon: float) -> float:
    """Fitness gained over the parent (floored at 0) per dollar (plus `epsilon`)."""
    return max(0.0, fitness - parent_fitness) / (usd + epsilon)


def arms(names: Sequence[str], pulls: Iterable[Mapping[str, Any]]) -> list[Arm]:
    """The arms' state from stored pulls (rows with arm, cost_usd and reward, None while
    pending); pulls of arms not in `names` are ignored."""
    state = {name: Arm(name) for name in names}
    for row in pulls:
        arm = state.get(row["arm"])
        if arm is None:
            continue
        r = row["reward"]
        state[arm.name] = dataclasses.replace(
            arm, pulls=arm.pulls + 1, usd=arm.usd + row["cost_usd"],
            rewarded=arm.rewarded + (r is not None), reward_sum=arm.reward_sum + (r or 0.0),
            best=max(arm.best, r or 0.0),
        )  # fmt: skip
    return [state[name] for name in names]


def choose(kind: str, state: Sequence[Arm], rng: np.random.Generator) -> str:
    """The arm to pull: "ucb" (UCB1: an untried arm first, in the listed order, then the
    largest mean plus sqrt(2 ln N / n)), "thompson" (a Beta(1 + rewards, 1 + misses) draw per
    arm, rewards in [0, 1]) or "none" (the first). Ties go to the first listed."""
    if kind == "none" or len(state) == 1:
        return state[0].name
    scale = max(a.best for a in state) or 1.0
    if kind == "ucb":
        untried = [a for a in state if a.pulls == 0]
        if untried:
            return untried[0].name
        total = sum(a.pulls for a in state)
        scores = [(a.mean_reward or 0.0) / scale + math.sqrt(2 * math.log(total) / a.pulls)
                  for a in state]  # fmt: skip
    elif kind == "thompson":
        scores = [rng.beta(1 + a.reward_sum / scale, 1 + a.rewarded - a.reward_sum / scale)
                  for a in state]  # fmt: skip
    else:
        raise ValueError(f"no bandit {kind!r}: 'ucb', 'thompson' or 'none'")
    return state[int(np.argmax(scores))].name


def board(names: Sequence[str], pulls: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """The leaderboard's view: per arm its pulls, rewarded pulls, mean reward and dollars."""
    return {"kind": kind, "arms": [
        {"arm": a.name, "pulls": a.pulls, "rewarded": a.rewarded,
         "mean_reward": a.mean_reward, "usd": a.usd} for a in arms(names, pulls)]}  # fmt: skip
