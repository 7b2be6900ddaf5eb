"""The evolution run's typed configuration, from `configs/<name>.py` via `from_config_dict`.

Two stages: `explore` (every candidate, small config) and `verify` (the top candidates by
exploration fitness and the baselines, retrained at a larger config). Each stage is a full
`ExperimentConfig`; the candidate's mixer replaces the config's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asi_jax.agents.llm import LLMConfig
from asi_jax.candidates.checker import CheckConfig
from asi_jax.candidates.sandbox import Limits
from asi_jax.evolution.fitness import FitnessConfig
from asi_jax.evolution.sampling import SamplingConfig
from asi_jax.train.config import ExperimentConfig, convert


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """Exploration stops at the first budget reached; 0 means unlimited."""

    candidates: int = 20  # proposals that pass the novelty check (evaluated or failed)
    wall_seconds: float = 0.0  # over all resumptions of the run
    compute_seconds: float = 0.0  # summed sandbox seconds of every evaluation


@dataclasses.dataclass(frozen=True)
class CognitionConfig:
    embedder: str = "hashing"  # "hashing" (offline) or "gemini"
    extra_entries: tuple[str, ...] = ()  # more JSONL files, or ASI-Arch JSON files/folders
    top_k: int = 4
    tree_threshold: int = 2000  # above this many entries: ScaNN tree + AH instead of brute force


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    promote: int = 2  # the top candidates by exploration fitness; 0 skips verification
    experiment: ExperimentConfig | None = None


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    seed: int = 0
    agents: str = "offline"  # "offline" (no network) or "llm" (researcher, analyser, judge)
    llm: LLMConfig = LLMConfig()
    workers: int = 2  # candidates evaluated at once (sandboxed processes)
    pin_devices: bool = False  # worker i sees only accelerator i (one candidate per device)
    baselines: tuple[str, ...] = ("linear_attention", "deltanet", "gated_deltanet")
    reference_baseline: str = "deltanet"  # fitness is relative to this baseline's run
    explore: ExperimentConfig = ExperimentConfig()
    verify: VerifyConfig = VerifyConfig()
    budget: BudgetConfig = BudgetConfig()
    sampling: SamplingConfig = SamplingConfig()
    fitness: FitnessConfig = FitnessConfig()
    cognition: CognitionConfig = CognitionConfig()
    novelty_threshold: float = 0.97  # reject a motivation this similar to an earlier one
    max_proposal_tries: int = 10  # per slot, before the researcher is considered exhausted
    check: CheckConfig = CheckConfig()
    limits: Limits = Limits()
    max_attempts: int = 2  # engineer attempts per candidate (self-revision)
    param_budget_ratio: float = 1.5  # times the reference baseline's mixer parameters

    def __post_init__(self):
        if self.agents not in ("offline", "llm"):
            raise ValueError(f"agents must be 'offline' or 'llm', got {self.agents!r}")
        if self.reference_baseline not in self.baselines:
            raise ValueError(f"reference_baseline {self.reference_baseline!r} must be one of "
                             f"the baselines {list(self.baselines)}")  # fmt: skip
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0.0 < self.novelty_threshold <= 1.0:
            raise ValueError(f"novelty_threshold must be in (0, 1], got {self.novelty_threshold}")


def from_config_dict(config: Mapping[str, Any]) -> EvolutionConfig:
    to_dict = getattr(config, "to_dict", None)
    return convert(EvolutionConfig, to_dict() if to_dict else config)
