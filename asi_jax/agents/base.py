"""What the agents exchange, and the roles as protocols.

Each role has an offline implementation (this package) and may have LLM-backed ones; the
controller sees only these protocols. Every record names the agent that produced it, and the
offline ones say so in their names ("offline-...").
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from asi_jax.cognition.store import Retrieved


@dataclasses.dataclass(frozen=True)
class Record:
    """A candidate as the agents see it: its design and, when evaluated, its results."""

    id: int
    name: str
    parent_id: int | None
    motivation: str
    code: str
    design: dict[str, Any] | None
    status: str  # pending | evaluated | failed
    loss: float | None = None
    benchmark: float | None = None
    fitness: float | None = None
    metrics: dict[str, Any] | None = None
    failure_stage: str | None = None
    failure_reason: str | None = None
    analysis: str | None = None  # the analyser's report of this candidate (its explore stage)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


MODES = ("full", "diff", "crossover")


@dataclasses.dataclass(frozen=True)
class Note:
    """A human's idea that proposals must consider (scripts/steer.py idea), with its author."""

    id: str
    author: str
    text: str


@dataclasses.dataclass(frozen=True)
class Rule:
    """A human's ban or requirement (scripts/steer.py ban/require): of a design component's
    option (`component`=`value`, the option as text) or of a code pattern (a regex searched
    in the candidate's file). Proposals that break it are rejected before any compute."""

    id: str
    author: str
    kind: str  # ban | require
    component: str | None = None
    value: str | None = None
    pattern: str | None = None

    def describe(self) -> str:
        what = (f"code matching /{self.pattern}/" if self.pattern is not None
                else f"{self.component}={self.value}")  # fmt: skip
        return f"{'banned' if self.kind == 'ban' else 'required'}: {what}"

    def names(self, component: str, value: Any) -> bool:
        """Whether the rule is about this design option."""
        return self.component == component and self.value == option_text(value)


def option_text(value: Any) -> str:
    """A design option as steering commands write it (True, 4, silu)."""
    return str(value)


@dataclasses.dataclass(frozen=True)
class ResearchContext:
    parent: Record
    references: Sequence[Record]
    cognition: Sequence[Retrieved]  # retrieved for the parent's problem summary
    problem_summary: str
    lessons: Sequence[str]
    # (component, option) -> (mean fitness change when a child switched to it, count)
    component_effects: dict[tuple[str, Any], tuple[float, int]]
    known_designs: frozenset[str]  # design keys already proposed (to avoid repeats)
    seed: int
    # How the child is written: "full" (a whole new file), "diff" (edits to the parent's
    # file) or "crossover" (a whole file combining `parent` and `second_parent`). Researchers
    # without an edit mode (the offline ones) write whole files whatever it says.
    mode: str = "full"
    second_parent: Record | None = None
    # The human's steering (scripts/steer.py): ideas to consider, at high priority, and the
    # bans and requirements a proposal must respect.
    notes: Sequence[Note] = ()
    rules: Sequence[Rule] = ()

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"a research mode is one of {MODES}, got {self.mode!r}")
        if self.mode == "crossover" and self.second_parent is None:
            raise ValueError("a crossover needs a second_parent")


@dataclasses.dataclass(frozen=True)
class Proposal:
    name: str
    motivation: str
    code: str
    design: dict[str, Any] | None
    idea_origins: list[dict[str, str]]  # [{idea, origin: cognition|analysis|original, evidence}]
    mode: str = "full"  # how it was written (ResearchContext.mode), "full" for offline agents


@dataclasses.dataclass(frozen=True)
class Analysis:
    report: str
    problem_summary: str  # what the cognition store is queried with
    lesson: str | None


class Researcher(Protocol):
    name: str

    def propose(self, context: ResearchContext) -> Proposal: ...

    def revise(self, source: str, error: str) -> str | None:
        """A repaired source for a failing candidate, or None to give up."""
        ...


class Analyser(Protocol):
    name: str

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis: ...  # fmt: skip


class Judge(Protocol):
    name: str

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record]) -> tuple[float, str]:  # fmt: skip
        """(score on 1-10, rationale) of an explored `record` (its figures included), beside
        the stage's evaluated `baselines`; `population`: the designs that came before it."""
        ...


# (parent design, child design) -> {component: (old option, new option)} where they differ.
DesignChanges = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, tuple[Any, Any]]]


def component_effects(records: Sequence[Record], changes: DesignChanges
                      ) -> dict[tuple[str, Any], tuple[float, int]]:  # fmt: skip
    """(component, new option) -> (mean fitness change from parent to child, count), over
    evaluated children of evaluated parents with designs. A failed child counts as a change
    of -1."""
    by_id = {r.id: r for r in records}
    totals: dict[tuple[str, Any], list[float]] = defaultdict(list)
    for r in records:
        parent = by_id.get(r.parent_id) if r.parent_id is not None else None
        if parent is None or parent.fitness is None or r.status == "pending":
            continue
        if not (parent.design and r.design):
            continue
        delta = (r.fitness - parent.fitness) if r.fitness is not None else -1.0
        for field, (_, new) in changes(parent.design, r.design).items():
            totals[(field, new)].append(delta)
    return {k: (sum(v) / len(v), len(v)) for k, v in totals.items()}
