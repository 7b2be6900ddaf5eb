"""The evolution run's typed configuration, from `configs/<name>.py` via `from_config_dict`.

`task` names what is evolved (`asi_jax.tasks`); `check` holds that task's check settings.
Two stages: `explore` (every candidate, small config) and `verify` (the top candidates by
exploration fitness and the baselines, retrained at a larger config). Each stage is a full
`ExperimentConfig`, which the task's evaluation trains with the candidate in it. A config
file builds its ConfigDict with `complete_config`, so every field, the task's check settings
included, can be overridden on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from asi_jax.agents.base import MODES
from asi_jax.agents.llm import LLMConfig
from asi_jax.candidates.sandbox import Limits
from asi_jax.evolution.fitness import FitnessConfig
from asi_jax.evolution.sampling import SamplingConfig
from asi_jax.tasks import get_task
from asi_jax.train import config as train_config
from asi_jax.train.config import ExperimentConfig, complete, convert

AGENT_KINDS = ("offline", "llm", "random")  # "random": the random-search control arm
BACKENDS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """Exploration stops at the first budget reached; 0 means no limit on that measure, and
    at least one must be set."""

    candidates: int = 20  # proposals that pass the novelty check (evaluated or failed)
    wall_seconds: float = 0.0  # over all resumptions of the run
    compute_seconds: float = 0.0  # summed sandbox seconds of every evaluation
    usd: float = 0.0  # dollars spent on language-model calls (llm.prices)

    def __post_init__(self):
        for name in ("candidates", "wall_seconds", "compute_seconds", "usd"):
            if getattr(self, name) < 0:
                raise ValueError(f"budget.{name} must be >= 0 (0: no limit), got "
                                 f"{getattr(self, name)}")  # fmt: skip
        if not (self.candidates or self.wall_seconds or self.compute_seconds or self.usd):
            raise ValueError("budget: candidates, wall_seconds, compute_seconds and usd are all "
                             "0, so exploration would never end; set at least one")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StageLimits(Limits):
    """Each evaluation's sandbox limits. The wall and CPU figures are floors: once the
    reference baseline has run in a stage, the stage's other evaluations get
    `reference_multiple` times the CPU time it took, and that multiple of its wall time times
    the evaluations that run at once (it ran alone; they share the machine), where that is
    more. So a slow or busy machine raises the limits instead of failing every candidate. The
    reference itself runs at the floors, and once more at twice them if it runs out of
    time."""

    reference_multiple: float = 4.0

    def __post_init__(self):
        super().__post_init__()
        if self.reference_multiple < 1:
            raise ValueError(f"limits.reference_multiple must be >= 1, got "
                             f"{self.reference_multiple}")  # fmt: skip

    def for_stage(self, reference: dict[str, float] | None, concurrent: int = 1) -> Limits:
        """The sandbox limits of a stage whose reference took `reference` ({wall_seconds,
        cpu_seconds}; None: not measured yet, the floors), for `concurrent` evaluations at
        once."""
        floors = Limits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Limits)})
        if not reference:
            return floors
        wall = max(self.wall_seconds,
                   self.reference_multiple * reference["wall_seconds"] * concurrent)  # fmt: skip
        cpu = max(
            self.cpu_seconds,
            math.ceil(self.reference_multiple * (reference.get("cpu_seconds") or 0)),
        )
        return dataclasses.replace(floors, wall_seconds=wall, cpu_seconds=cpu)


@dataclasses.dataclass(frozen=True)
class CognitionConfig:
    embedder: str = "hashing"  # "hashing" (offline) or "gemini"
    extra_entries: tuple[str, ...] = ()  # more JSONL files, or ASI-Arch JSON files/folders
    top_k: int = 4
    # Above this many entries ScaNN scores anisotropic hashes and re-scores the best exactly
    # (recall@10 1.0 at 100k, 7x faster than exact: asi_jax.cognition.index.IndexConfig).
    exact_search_limit: int = 20_000


@dataclasses.dataclass(frozen=True)
class IslandConfig:
    """Separate populations, as ASI-Evolve, OpenEvolve and ShinkaEvolve keep: each island's
    parents and references come from its own members; every `migration_interval` proposed
    candidates, each island's `migrants` fittest join the next island (a ring). Baselines
    belong to every island. One island is a single population."""

    count: int = 1
    migration_interval: int = 0  # proposed candidates between migrations; 0: never
    migrants: int = 1  # the top-k of each island that migrate
    agents: tuple[str, ...] = ()  # per island, among AGENT_KINDS; empty: `agents` for all

    def __post_init__(self):
        if self.count < 1 or self.migration_interval < 0 or self.migrants < 0:
            raise ValueError("islands.count must be >= 1, migration_interval and migrants >= 0")
        if self.agents and len(self.agents) != self.count:
            raise ValueError(f"islands.agents names {len(self.agents)} agent kinds for "
                             f"{self.count} islands; give one per island or none")  # fmt: skip
        if bad := [a for a in self.agents if a not in AGENT_KINDS]:
            raise ValueError(f"islands.agents: {bad} are not among {list(AGENT_KINDS)}")


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Verification retrains the promoted candidates and every baseline with `seeds` seeds
    (the experiment's seed, then +1, +2, ...: stages "verify", "verify-2", ...); a candidate
    beats the reference only where the bootstrap interval (at `confidence`) of its gain over
    the reference, paired by seed, lies above zero. Each verified winner with a design is then
    ablated: one variant per component it does not share with the reference, that component
    set back to the reference's option, retrained with the same seeds."""

    promote: int = 2  # the top candidates by exploration fitness; 0 skips verification
    experiment: ExperimentConfig | None = None  # None: the exploration experiment
    limits: StageLimits | None = None  # None: the run's `limits`
    seeds: int = 3  # training seeds per verified candidate and baseline
    confidence: float = 0.95  # of the bootstrap intervals
    bootstrap_resamples: int = 10_000
    ablate: bool = True  # ablate every verified winner (components, or the researcher's variants)
    max_ablations: int = 0  # variants per winner at most; 0: one per differing component
    # Processes of one verification run, each on its own Ray node (backend="ray"), joined by
    # jax.distributed; a candidate's file is traced in each node's sandbox and its programs
    # run there (asi_jax.train.exported). 1: each run on one node, in the sandbox.
    hosts: int = 1

    def __post_init__(self):
        if self.hosts < 1:
            raise ValueError(f"verify.hosts must be >= 1, got {self.hosts}")
        if self.promote < 0 or self.seeds < 1 or self.max_ablations < 0:
            raise ValueError("verify.promote and verify.max_ablations must be >= 0 and "
                             f"verify.seeds >= 1; got {self.promote}, {self.max_ablations}, "
                             f"{self.seeds}")  # fmt: skip
        if not 0.5 <= self.confidence < 1.0 or self.bootstrap_resamples < 100:
            raise ValueError("verify.confidence must be in [0.5, 1) and "
                             "verify.bootstrap_resamples >= 100")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SteeringConfig:
    """How the human's commands (scripts/steer.py) act on the run. A resumed run may change
    these."""

    # Verification waits until each promoted candidate is approved or vetoed (steer.py
    # approve/veto NAME); off, a veto still keeps a candidate out of verification.
    require_approval: bool = False
    idea_proposals: int = 5  # an idea stays until this many candidates had it; 0: until withdrawn
    poll_seconds: float = 2.0  # how often a paused or waiting run reads the inbox

    def __post_init__(self):
        if self.idea_proposals < 0 or self.poll_seconds <= 0:
            raise ValueError(f"steering.idea_proposals must be >= 0 and poll_seconds > 0, got "
                             f"{self.idea_proposals} and {self.poll_seconds}")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Evaluations on a Ray cluster (`backend="ray"`, see `asi_jax.evolution.backends`): each
    sandboxed attempt is one Ray task holding these resources on the node that runs it."""

    address: str = "auto"  # the head, "host:port"; "auto": the cluster started on this machine
    num_cpus: float = 1.0  # per evaluation
    num_gpus: float = 0.0  # per evaluation; Ray pins the sandbox to the GPUs it assigns
    # Custom resources per evaluation, (name, amount) pairs: (("TPU", 4),) on a TPU VM.
    resources: tuple[tuple[str, float], ...] = ()
    memory_bytes: int = 0  # memory Ray reserves per evaluation; 0: none
    # Times an evaluation whose node or worker died is run again before it is recorded as
    # failed (failure stage "infrastructure"); a candidate's own failure is never retried.
    max_retries: int = 2
    # Where the nodes copy each evaluation's sandbox folders (an etils.epath folder, local or
    # gs://); "": the workdir (one machine, or a workdir on a file system every node mounts).
    storage: str = ""

    def __post_init__(self):
        try:
            resources = tuple((str(n), float(a)) for n, a in self.resources)
        except (TypeError, ValueError):
            raise ValueError(f"ray.resources are (name, amount) pairs, (('TPU', 4),) for "
                             f"example; got {self.resources!r}") from None  # fmt: skip
        object.__setattr__(self, "resources", resources)
        for name in ("num_cpus", "num_gpus", "memory_bytes", "max_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"ray.{name} must be >= 0, got {getattr(self, name)}")
        if bad := [n for n, a in resources if a <= 0 or n in ("CPU", "GPU", "memory")]:
            raise ValueError(f"ray.resources {bad}: custom resources with amounts > 0 (CPU, GPU "
                             "and memory have ray.num_cpus, num_gpus, memory_bytes)")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    task: str = "linear_attention"  # what is evolved: a registered task (asi_jax.tasks)
    seed: int = 0
    # "offline" (no network), "llm" (researcher, analyser, judge) or "random" (the
    # random-search control arm: uniform draws from the task's grammar, offline analyser and
    # judge)
    agents: str = "offline"
    llm: LLMConfig = LLMConfig()
    workers: int = 2  # candidates evaluated at once (sandboxed processes)
    # Where evaluations run: "local" (sandboxed processes on this machine) or "ray" (Ray
    # tasks on a cluster's nodes, see `ray`); `workers` bounds them in flight either way.
    backend: str = "local"
    ray: RayConfig = RayConfig()
    pin_devices: bool = False  # worker i sees only accelerator i (one candidate per device)
    baselines: tuple[str, ...] = ()  # generation 0; empty: the task's
    reference_baseline: str = ""  # fitness is relative to this baseline's run; "": the task's
    explore: ExperimentConfig = ExperimentConfig()
    verify: VerifyConfig = VerifyConfig()
    budget: BudgetConfig = BudgetConfig()
    sampling: SamplingConfig = SamplingConfig()
    fitness: FitnessConfig = FitnessConfig()
    cognition: CognitionConfig = CognitionConfig()
    novelty_threshold: float = 0.97  # reject a motivation this similar to an earlier one
    max_proposal_tries: int = 10  # per slot, before the researcher is considered exhausted
    # How an LLM researcher proposes, drawn per proposal with these weights: "full" (a whole
    # file), "diff" (search/replace blocks against the parent's file), "crossover" (two
    # parents). Offline researchers propose whole designs whatever is drawn.
    edit_modes: tuple[tuple[str, float], ...] = (("full", 0.4), ("diff", 0.4),
                                                 ("crossover", 0.2))  # fmt: skip
    islands: IslandConfig = IslandConfig()
    steering: SteeringConfig = SteeringConfig()
    check: Any = None  # the task's check settings (a mapping or its check_config); None: defaults
    limits: StageLimits = StageLimits()
    max_attempts: int = 2  # sources tried per candidate: the first, then each revision
    # With agents="llm" on a machine without the sandbox's OS layers (bubblewrap namespaces
    # and Landlock), model-written code would run behind the audit hook and rlimits alone:
    # refused unless this is set, which accepts that risk.
    allow_llm_code_without_os_sandbox: bool = False

    def __post_init__(self):
        task = get_task(self.task)
        if not isinstance(self.check, task.check_config):
            check = self.check if self.check is not None else {}
            object.__setattr__(self, "check", convert(task.check_config, check, "check."))
        if not self.baselines:
            object.__setattr__(self, "baselines", task.default_baselines)
        if not self.reference_baseline:
            object.__setattr__(self, "reference_baseline", task.default_reference)
        if unknown := sorted(set(self.baselines) - set(task.baselines())):
            raise ValueError(f"baselines {unknown} are not baselines of the task {task.name}; "
                             f"it has {sorted(task.baselines())}")  # fmt: skip
        if self.agents not in AGENT_KINDS:
            raise ValueError(f"agents must be one of {list(AGENT_KINDS)}, got {self.agents!r}")
        kinds = {self.agents_of(i) for i in range(self.islands.count)}
        if "random" in kinds and task.grammar() is None:
            raise ValueError(f"agents 'random' (the random-search control arm) sample the task's "
                             f"design grammar, and the task {task.name} has none")  # fmt: skip
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.verify.hosts > 1 and self.backend != "ray":
            raise ValueError(f"verify.hosts={self.verify.hosts} spreads a verification run over "
                             "Ray nodes: set backend='ray' (see the README's 'Many machines "
                             "with Ray')")  # fmt: skip
        if self.backend == "ray" and self.pin_devices:
            raise ValueError(
                "pin_devices applies to the local backend: on Ray each evaluation "
                "gets the devices Ray assigns it (ray.num_gpus, ray.resources)"
            )
        if self.reference_baseline not in self.baselines:
            raise ValueError(f"reference_baseline {self.reference_baseline!r} must be one of "
                             f"the baselines {list(self.baselines)}")  # fmt: skip
        modes = tuple((str(m), float(w)) for m, w in self.edit_modes)
        if (not modes or any(m not in MODES or w < 0 for m, w in modes)
                or sum(w for _, w in modes) <= 0):  # fmt: skip
            raise ValueError(
                f"edit_modes are (mode, weight) pairs, modes among {MODES}, "
                f"weights >= 0 and not all 0; got {self.edit_modes!r}"
            )
        object.__setattr__(self, "edit_modes", modes)
        for name in ("workers", "max_attempts", "max_proposal_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.novelty_threshold <= 1.0:
            raise ValueError(f"novelty_threshold must be in (0, 1], got {self.novelty_threshold}")

    def stages_of(self, stage: str) -> tuple[str, ...]:
        """The evaluation stages of a stage: "explore" is one; "verify" one per seed."""
        if stage == "verify":
            return ("verify", *(f"verify-{k}" for k in range(2, self.verify.seeds + 1)))
        return (stage,)

    def experiment_of(self, stage: str) -> ExperimentConfig:
        """What `stage` ("explore", "verify" or a verification seed's "verify-k") trains:
        the k-th seed's experiment has its seed and its data's seed k - 1 above the first's."""
        base, replicate = split_stage(stage)
        experiment = self.explore
        if base == "verify" and self.verify.experiment is not None:
            experiment = self.verify.experiment
        if replicate == 1:
            return experiment
        data = dataclasses.replace(experiment.data, seed=experiment.data.seed + replicate - 1)
        return dataclasses.replace(experiment, seed=experiment.seed + replicate - 1, data=data)

    def limits_of(self, stage: str) -> StageLimits:
        """The sandbox limits' floors of `stage` (every seed of a stage shares them)."""
        base = split_stage(stage)[0]
        return self.verify.limits if base == "verify" and self.verify.limits else self.limits

    def agents_of(self, island: int) -> str:
        """The agent kind (one of AGENT_KINDS) proposing on `island`."""
        return self.islands.agents[island] if self.islands.agents else self.agents


def split_stage(stage: str) -> tuple[str, int]:
    """("verify", 2) of "verify-2"; a stage without a seed suffix is its own first seed."""
    base, _, k = stage.partition("-")
    if k and not k.isdigit():
        raise ValueError(f"not a stage name: {stage!r}")
    return base, int(k) if k else 1


def from_config_dict(config: Mapping[str, Any]) -> EvolutionConfig:
    return train_config.from_config_dict(config, EvolutionConfig)


def complete_config(values: Mapping[str, Any]) -> ConfigDict:
    """A config file's ConfigDict: every field of `EvolutionConfig` at its default with
    `values` merged over them, `check` holding every setting of the task's check."""
    task = get_task(values.get("task", EvolutionConfig.task))
    check = complete(task.check_config, dict(values.get("check") or {})).to_dict()
    return complete(EvolutionConfig, {**values, "check": check})
