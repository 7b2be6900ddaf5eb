"""What the evolution loop needs to know about a problem, in one interface.

A task is what the candidates are (a token mixer, an optimizer), how they are checked and
evaluated, and what the agents know about them. The controller, the engineer, the sandbox and
the policy engine are generic; they ask the task. Two sides:

- In the controller (trusted, no JAX devices): the contract text for prompts, the allowed
  imports and the symbol a candidate defines, the baselines, the settings of the sandboxed
  check, the named figures the fitness reads from an evaluation, the offline agents, the
  cognition entries.
- In the sandboxed worker (after the wall is up): loading the candidate's symbol from its
  executed source, a baseline's trusted symbol, the behavioural check, the evaluation.

A task is a subclass of `Task` registered with `asi_jax.tasks.register`; its folder under
`asi_jax/tasks/` holds everything specific to it, and its configs live in `configs/`.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from asi_jax.agents.base import Analyser, Judge, Record, Researcher
from asi_jax.candidates.policy import Contract

if TYPE_CHECKING:
    from asi_jax.agents.grammar_search import Grammar


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A generation-0 candidate: trusted code of ours, evaluated like any candidate."""

    name: str
    source: str  # what the agents read (and, for a task without trusted symbols, what runs)
    description: str  # one paragraph: what it is and why it is a baseline
    design: dict[str, Any] | None = None  # its structured design, where the task has one


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure the fitness reads: `kind` "loss" (lower is better) or "benchmark" (higher)."""

    name: str  # as leaderboards and prompts print it, e.g. "held-out loss"
    kind: str
    short: str  # in progress lines, e.g. "loss", "recall"

    def __post_init__(self):
        if self.kind not in ("loss", "benchmark"):
            raise ValueError(f"a figure's kind is 'loss' or 'benchmark', got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class Figures:
    """An evaluation's figures: the loss-like and benchmark-like values the fitness reads
    (None when the evaluation produced none) and task-specific details for the leaderboard."""

    loss: float | None
    benchmark: float | None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Task(abc.ABC):
    """One problem the loop can evolve solutions to. Subclasses set the class attributes and
    implement the methods; instances hold no state and are cheap to make."""

    name: ClassVar[str]  # the registry key, `--config.task`
    policy: ClassVar[Contract]  # what a candidate may import and reach, and must define
    loss: ClassVar[Figure]
    benchmark: ClassVar[Figure]
    check_config: ClassVar[type]  # the dataclass of the sandboxed check's settings
    default_baselines: ClassVar[tuple[str, ...]]
    default_reference: ClassVar[str]  # fitness and limits are relative to its run
    cognition_file: ClassVar[Path]  # the task's research entries (JSONL)
    # Modules the worker-side methods use, imported before the sandbox's audit hook (which
    # then refuses reading source files outside the candidate's folder) and watched.
    worker_modules: ClassVar[tuple[str, ...]] = ()

    # -- controller side -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def contract(self) -> str:
        """What a candidate is and may do, for the LLM agents' prompts."""

    @abc.abstractmethod
    def baselines(self) -> Mapping[str, Baseline]:
        """Every baseline this task offers, by name."""

    @abc.abstractmethod
    def check_request(self, check: Any, train: Any, reference: str) -> dict[str, Any]:
        """The settings the worker's `check` receives (JSON), from the configured `check`
        (an instance of `check_config`), the stage's training config (None: check only) and
        the reference baseline's name (budgets relative to it are resolved here)."""

    @abc.abstractmethod
    def figures(self, result: Mapping[str, Any] | None) -> Figures:
        """The figures of an evaluation's result (what the worker's `evaluate` returned)."""

    @abc.abstractmethod
    def offline_agents(self) -> tuple[Researcher, Analyser, Judge]:
        """Researcher, analyser and judge that need no network."""

    def grammar(self) -> Grammar | None:
        """The task's design grammar, where it has one: what the random-search control arm
        (agents "random") samples uniformly."""
        return None

    def candidate_source(self, record: Record) -> str:
        """`record`'s code as a candidate file that agents may read, edit and imitate. A
        baseline's code may be trusted source that imports what candidates may not; a task
        that can write it as a valid candidate does so here."""
        return record.code

    def design_of(self, source: str) -> dict[str, Any] | None:
        """The structured design of a (revised) source, where the task has a grammar."""
        return None

    def design_changes(self, parent: Mapping[str, Any], child: Mapping[str, Any]
                       ) -> dict[str, tuple[Any, Any]]:  # fmt: skip
        """{component: (parent's option, child's)} where two designs differ."""
        return {k: (parent.get(k), child.get(k)) for k in sorted(set(parent) | set(child))
                if parent.get(k) != child.get(k)}  # fmt: skip

    def design_key(self, design: Mapping[str, Any]) -> str:
        """Equal for designs that behave the same (a duplicate is not proposed twice)."""
        return json.dumps(design, sort_keys=True)

    # -- worker side (inside the sandbox) ----------------------------------------------------
    def load(self, namespace: Mapping[str, Any]) -> Any:
        """The candidate's symbol from its executed module's namespace."""
        symbol, kind = self.policy.symbol, self.policy.symbol_kind
        value = namespace.get(symbol)
        if not (isinstance(value, type) if kind == "class" else callable(value)):
            raise TypeError(f"the candidate defines no {kind} {symbol}")
        return value

    @abc.abstractmethod
    def baseline_symbol(self, name: str) -> Any:
        """The trusted symbol of the baseline `name` (the worker runs it instead of exec)."""

    @abc.abstractmethod
    def check(self, symbol: Any, settings: Mapping[str, Any],
              describe: Callable[[BaseException], str]) -> dict[str, Any]:  # fmt: skip
        """The behavioural check: {"ok", "stage", "reason", ...figures}; `describe` turns an
        exception into the trimmed reason a reviser reads."""

    @abc.abstractmethod
    def evaluate(self, symbol: Any, train: Mapping[str, Any], workdir: Path, *, label: str,
                 isolation: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
        """Trains/evaluates the candidate under `train` (the stage's config, as a dict) in
        `workdir`; returns the result, whose "status" is "completed" when it counts (else
        "stop_reason" says why). `label` names what was trained, for the run's records."""

    def evaluate_checkpoint(self, symbol: Any, workdir: Path, options: Mapping[str, Any]
                            ) -> dict[str, Any]:  # fmt: skip
        """Re-evaluates a finished training run in `workdir` (scripts/evaluate.py)."""
        raise NotImplementedError(f"the task {self.name} has no checkpoint re-evaluation")

    def export_program(self, symbol: Any, train: Mapping[str, Any], folder: Path,
                       options: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        """Writes the training programs of a multi-host run of `symbol` to `folder` (run
        outside the sandbox; see `asi_jax.train.exported`); returns their manifest."""
        raise NotImplementedError(f"the task {self.name} has no multi-host programs")
