"""What a run will cost before it runs: each stage's model, data and token budget, built for
real (abstract parameters, one real batch from the stage's pipeline) without training.

    python scripts/evolve.py --config=configs/evolve_asi_arch.py:gpu,/data/shards --dry_run

Accelerator-hours are estimated from FLOPs: 6 x parameters x tokens per evaluation, at the
model-FLOP utilisation a recorded device run reached (`MEASURED_MFU`), on the device this
runs on when its peak is known, else on the device of that record. Every figure says which.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from asi_jax.data.pipeline import train_iterator
from asi_jax.evolution.config import EvolutionConfig
from asi_jax.models.lm import CausalLM, count_params
from asi_jax.models.mixers import MIXERS, resolve_mixer
from asi_jax.train.config import ExperimentConfig
from pallas_kernels.hardware import PEAK_BF16_FLOPS, peak_flops

# Model-FLOP utilisation (6 x parameters per token) of a recorded training run, and where it
# is recorded. The 20M config trained at 448,100 tokens/s on one H200 with the chunked kernels.
MEASURED_MFU = {
    "device": "H200",
    "mfu": 0.056,
    "source": "configs/explore_20m.py on one H200 (BENCHMARKS.md, GPU section)",
}


@dataclasses.dataclass(frozen=True)
class StagePlan:
    stage: str
    mixer: str  # the model built: the reference baseline's mixer (or the experiment's)
    params: dict[str, int]  # total and non-embedding
    batch_shape: tuple[int, ...]  # one real batch's inputs, from the stage's data pipeline
    vocab_size: int
    tokens_per_step: int
    steps: int
    evaluations: int | None  # trainings in the stage; None: the budget is not a count
    device: str  # the device the estimate is for
    estimated_hours_per_evaluation: float

    @property
    def tokens(self) -> int:
        return self.tokens_per_step * self.steps

    @property
    def estimated_hours(self) -> float | None:
        if self.evaluations is None:
            return None
        return self.estimated_hours_per_evaluation * self.evaluations


def _stages(config: EvolutionConfig) -> list[tuple[str, ExperimentConfig, int | None]]:
    baselines = len(config.baselines)
    explore = config.budget.candidates + baselines if config.budget.candidates else None
    stages = [("explore", config.explore, explore)]
    if config.verify.promote > 0:
        # each seed retrains every promoted candidate and baseline (ablations come on top)
        stages.append(("verify", config.experiment_of("verify"),
                       (config.verify.promote + baselines) * config.verify.seeds))  # fmt: skip
    return stages


def _device() -> tuple[str, float]:
    """(name, bf16 peak FLOP/s) of this machine's accelerator, else of the recorded run's."""
    kind = jax.devices()[0].device_kind
    if (peak := peak_flops(kind)) is not None:
        return kind, peak
    return MEASURED_MFU["device"], PEAK_BF16_FLOPS[MEASURED_MFU["device"]]


def plan(config: EvolutionConfig) -> list[StagePlan]:
    """Builds each stage's model (abstractly: no parameter memory) and data pipeline (one real
    batch) and prices its training; raises what a real run would raise on a bad config."""
    device, peak = _device()
    plans = []
    for stage, experiment, evaluations in _stages(config):
        name = config.reference_baseline if config.reference_baseline in MIXERS else (
            experiment.mixer)  # fmt: skip
        mixer = resolve_mixer(name)
        model = nnx.eval_shape(lambda e=experiment, m=mixer: CausalLM(e.model, m, rngs=nnx.Rngs(0)))
        params = count_params(model)
        batch = next(train_iterator(experiment.data))
        tokens_per_step = experiment.data.batch_size * experiment.data.seq_len
        steps = experiment.train.steps
        seconds = 6 * params["total"] * tokens_per_step * steps / (peak * MEASURED_MFU["mfu"])
        plans.append(StagePlan(
            stage=stage, mixer=name, params=params,
            batch_shape=tuple(batch["inputs"].shape), vocab_size=experiment.model.vocab_size,
            tokens_per_step=tokens_per_step, steps=steps, evaluations=evaluations,
            device=device, estimated_hours_per_evaluation=seconds / 3600,
        ))  # fmt: skip
    return plans


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def describe(plans: list[StagePlan]) -> str:
    """The dry run's printout: a block per stage and the total."""
    lines = []
    for p in plans:
        hours = p.estimated_hours
        lines += [
            f"[{p.stage}] model with {p.mixer}: {_count(p.params['total'])} parameters "
            f"({_count(p.params['non_embedding'])} without embeddings), vocabulary "
            f"{p.vocab_size}",
            f"[{p.stage}] data: batches of {list(p.batch_shape)} tokens read; "
            f"{_count(p.tokens_per_step)} tokens/step x {p.steps} steps = "
            f"{_count(p.tokens)} tokens per evaluation",
            f"[{p.stage}] {p.evaluations if p.evaluations is not None else '?'} evaluations; "
            f"estimated {p.estimated_hours_per_evaluation:.3g} {p.device}-hours each"
            + (f", {hours:.3g} in all" if hours is not None else ""),
        ]
    total = [p.estimated_hours for p in plans]
    if all(h is not None for h in total):
        lines.append(f"estimated total: {sum(total):.3g} {plans[0].device}-hours "
                     f"(6 x parameters x tokens at {MEASURED_MFU['mfu']:.1%} MFU, as measured: "
                     f"{MEASURED_MFU['source']})")  # fmt: skip
    return "\n".join(lines)


def as_json(plans: list[StagePlan]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(p), "tokens": p.tokens, "estimated_hours": p.estimated_hours}
            for p in plans]  # fmt: skip
