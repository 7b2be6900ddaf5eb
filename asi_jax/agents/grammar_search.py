"""The offline agents' grammar-generic core: search, novelty score and analysis skeleton.

A task with a design grammar describes it once (`Grammar`: options per component,
canonical form, key, name, rendering) together with its words (`Wording`: which cognition
keywords support which option, why each option, what the benchmark is called), and gets:

- `GrammarResearcher`: weighs every admissible single-component change of the parent's
  design with (a) the retrieved cognition entries whose text names the option (their
  similarity) and (b) `context.component_effects` (mean fitness change of children that
  switched to the option) and (c) the human's steering: notes whose text names the option
  and requirements of it weigh heavily, banned options are never drawn; sometimes
  recombines the parent with a reference instead; skips `context.known_designs`; says where
  each idea came from (steering, cognition, analysis, original).
- `novelty_judgement`: the offline judge's score from motivation similarity and design
  distance.
- `RandomResearcher`: the random-search control arm: every component's option drawn
  uniformly, with neither the parent, cognition nor analysis behind it.
- `GrammarAnalyser` (failures), `compare_with_parent`, `siblings_line`: the analyser's
  parts that do not depend on the task's figures.

None of it is an AI. Designs are JSON dicts here, canonical wherever the search holds them.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from asi_jax.agents.base import Analysis, Proposal, Record, ResearchContext
from asi_jax.cognition.store import Retrieved

Design = dict[str, Any]
Option = tuple[str, Any]  # (component, option)


@dataclasses.dataclass(frozen=True)
class Grammar:
    """What the search needs of a task's grammar, on JSON-dict designs."""

    options: Mapping[str, Sequence[Any]]  # component -> its options, in search order
    # the design with unused options reset; ValueError or TypeError outside the grammar
    canonical: Callable[[Mapping[str, Any]], Design]
    key: Callable[[Design], str]  # of a canonical design: the task's design_key
    name: Callable[[Design], str]  # a candidate name for a canonical design
    render: Callable[..., str]  # render(design, docstring=...) -> candidate source

    def differences(self, a: Design, b: Design) -> dict[str, tuple[Any, Any]]:
        """{component: (a's option, b's option)} where two canonical designs differ."""
        return {f: (a[f], b[f]) for f in self.options if a[f] != b[f]}

    def design_of(self, record: Record | None) -> Design | None:
        """The record's canonical design, or None without one in the grammar (an LLM's)."""
        if record is None or not record.design:
            return None
        try:
            return self.canonical(record.design)
        except (ValueError, TypeError):
            return None

    def changes(self, parent: Record | None, record: Record) -> dict[str, tuple[Any, Any]]:
        """What the record changed from its parent's design ({} when either has none)."""
        a, b = self.design_of(parent), self.design_of(record)
        return self.differences(a, b) if a and b else {}


@dataclasses.dataclass(frozen=True)
class Wording:
    """A task's words for its researcher's choices and motivations."""

    # option -> keyword groups; an entry supports the option when every group has a match
    keywords: Mapping[Option, tuple[tuple[str, ...], ...]]
    rationale: Mapping[Option, str]  # option -> why one would choose it
    benchmark: str  # what the benchmark figure is called in motivations ("recall")
    signature: str  # who proposed, on the motivation's last line
    inherited: str = "inherited from {name}, an evaluated design"  # a recombined idea


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    recombine_probability: float = 0.25
    cognition_weight: float = 3.0  # log-odds per unit of retrieval similarity
    analysis_weight: float = 10.0  # log-odds per unit of mean fitness change
    steering_weight: float = 5.0  # log-odds per human note naming the option (or requiring it)
    two_changes_probability: float = 0.2
    max_draws: int = 50  # attempts at a design not proposed before


def supports(text: str, option: Option, keywords: Mapping[Option, Any]) -> bool:
    """Whether a cognition entry's `text` names `option` (every keyword group matches)."""
    text = text.lower()
    groups = keywords.get(option, ())
    return bool(groups) and all(any(word in text for word in group) for group in groups)


def entry_text(retrieved: Retrieved) -> str:
    """The parts of a cognition entry that keywords are looked for in."""
    e = retrieved.entry
    return " ".join([e.title, e.design_insight, e.algorithmic_innovation,
                     e.implementation_guidance])  # fmt: skip


def origin(field: str, value: Any, evidence: Sequence[tuple[str, str]]) -> dict[str, str]:
    """An idea's origin: steering when a human's note or requirement named it, else
    cognition when an entry supported it, else analysis, else an exploratory draw."""
    idea = f"{field}={value}"
    if not evidence:
        return {"idea": idea, "origin": "original", "evidence": "exploratory draw"}
    kinds = {k for k, _ in evidence}
    kind = next(k for k in ("steering", "cognition", "analysis") if k in kinds)
    return {"idea": idea, "origin": kind, "evidence": "; ".join(t for _, t in evidence)}


class GrammarResearcher:
    """The offline grammar researcher (no LLM). See the module docstring; a task's subclass
    adds its name and `revise`."""

    def __init__(self, grammar: Grammar, wording: Wording, config: SearchConfig,
                 fallback: Design | None = None):  # fmt: skip
        """`fallback`: the design to build on when the parent has none (None: refuse)."""
        self.grammar, self.wording, self.config, self.fallback = grammar, wording, config, fallback

    def _weigh(self, parent: Design, context: ResearchContext) -> list:
        """Every admissible single change with its log-odds and the evidence for it; only
        changes of the components where the parent breaks a human's ban or requirement, when
        it does and such changes exist (any other child would be rejected)."""
        broken = {r.component for r in context.rules if r.component in parent
                  and r.names(r.component, parent[r.component]) == (r.kind == "ban")}  # fmt: skip
        changes = []
        for field, options in self.grammar.options.items():
            for value in options:
                child = self.grammar.canonical({**parent, field: value})
                if field not in self.grammar.differences(parent, child):
                    continue  # no change, or one the canonical form undoes
                rules = [r for r in context.rules if r.names(field, value)]
                if any(r.kind == "ban" for r in rules):
                    continue  # the controller would reject it
                logit, evidence = 0.0, []
                for note in context.notes:
                    if supports(note.text, (field, value), self.wording.keywords):
                        logit += self.config.steering_weight
                        evidence.append(("steering", f"idea #{note.id} of {note.author}"))
                for r in rules:
                    logit += self.config.steering_weight
                    evidence.append(("steering", f"required by #{r.id} of {r.author}"))
                for r in context.cognition:
                    if supports(entry_text(r), (field, value), self.wording.keywords):
                        logit += self.config.cognition_weight * max(r.score, 0.0)
                        evidence.append(("cognition", f"'{r.entry.title}' (similarity "
                                                      f"{r.score:.2f})"))  # fmt: skip
                effect = context.component_effects.get((field, value))
                if effect is not None:
                    mean, count = effect
                    logit += self.config.analysis_weight * mean
                    evidence.append(("analysis", f"children that switched to {field}={value} "
                                                 f"changed fitness by {mean:+.3f} on average "
                                                 f"(n={count})"))  # fmt: skip
                changes.append(((field, value), logit, evidence))
        return [c for c in changes if c[0][0] in broken] or changes

    def _mutate(self, parent: Design, context: ResearchContext, rng: np.random.Generator):
        changes = self._weigh(parent, context)
        logits = np.array([c[1] for c in changes])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        count = 2 if rng.random() < self.config.two_changes_probability else 1
        picks = rng.choice(len(changes), size=min(count, len(changes)), replace=False, p=probs)
        child, origins = parent, []
        for i in picks:
            (field, value), _, evidence = changes[int(i)]
            child = self.grammar.canonical({**child, field: value})
            origins.append(origin(field, value, evidence))
        return child, origins

    def _recombine(self, parent: Design, other: Design, other_name: str,
                   rng: np.random.Generator):  # fmt: skip
        diff = list(self.grammar.differences(parent, other))
        if not diff:
            return None, []
        take = [f for f in diff if rng.random() < 0.5] or [diff[int(rng.integers(len(diff)))]]
        child = self.grammar.canonical({**parent, **{f: other[f] for f in take}})
        evidence = self.wording.inherited.format(name=other_name)
        origins = [{"idea": f"{f}={other[f]}", "origin": "analysis", "evidence": evidence}
                   for f in take if child[f] == other[f]]  # fmt: skip
        return child, origins

    def propose(self, context: ResearchContext) -> Proposal:
        """A change of the parent's design not proposed before, rendered with its
        motivation; the same context gives the same proposal."""
        rng = np.random.default_rng(context.seed)
        parent = self.grammar.design_of(context.parent) or self.fallback
        if parent is None:
            raise ValueError(f"the parent {context.parent.name} has no design in the grammar "
                             "to build on")  # fmt: skip
        references = [(r.name, d) for r in context.references if (d := self.grammar.design_of(r))]
        child, origins = None, []
        for _ in range(self.config.max_draws):
            if references and rng.random() < self.config.recombine_probability:
                name, other = references[int(rng.integers(len(references)))]
                child, origins = self._recombine(parent, other, name, rng)
            else:
                child, origins = self._mutate(parent, context, rng)
            if child is not None and self.grammar.key(child) not in context.known_designs:
                break
        if child is None:
            child, origins = self._mutate(parent, context, rng)
        motivation = self._motivation(child, parent, origins, context)
        code = self.grammar.render(child, docstring=motivation)
        return Proposal(self.grammar.name(child), motivation, code, child, origins)

    def _motivation(self, child: Design, parent: Design, origins: list[dict[str, str]],
                    context: ResearchContext) -> str:  # fmt: skip
        p = context.parent
        figures = (f"fitness {p.fitness:.3f}, loss {p.loss:.4f}, {self.wording.benchmark} "
                   f"{p.benchmark:.3f}"
                   if p.fitness is not None and p.loss is not None and p.benchmark is not None
                   else "not yet scored")  # fmt: skip
        lines = [f"Builds on {p.name} ({figures})."]
        if context.problem_summary:
            lines.append(f"Its analysis: {context.problem_summary}")
        for field, (old, new) in self.grammar.differences(parent, child).items():
            why = self.wording.rationale.get((field, new), "")
            lines.append(f"Change {field}: {old} -> {new}: {why}.")
        for o in origins:
            lines.append(f"Idea {o['idea']} from {o['origin']}: {o['evidence']}.")
        lines.append(f"(Proposed by the {self.wording.signature}, not a language model.)")
        return "\n".join(lines)


class RandomResearcher:
    """The control arm's researcher: each component's option drawn uniformly from the
    grammar, then canonicalised; a design already proposed is drawn again (up to
    `max_draws` times). It reads neither the parent nor the cognition or analyses in the
    context, only its seed, so a resumed run draws what an uninterrupted one would."""

    name = "random-grammar-sampler"
    # It builds on no parent: the controller records its candidates without one and
    # retrieves no cognition for it.
    builds_on_parent = False

    def __init__(self, grammar: Grammar, max_draws: int = 50):
        self.grammar, self.max_draws = grammar, max_draws

    def draw(self, rng: np.random.Generator) -> Design:
        """One uniform draw, canonicalised."""
        options = self.grammar.options
        return self.grammar.canonical({f: o[int(rng.integers(len(o)))] for f, o in options.items()})

    def propose(self, context: ResearchContext) -> Proposal:
        rng = np.random.default_rng(context.seed)
        design, draws = self.draw(rng), 1
        while self.grammar.key(design) in context.known_designs and draws < self.max_draws:
            design, draws = self.draw(rng), draws + 1
        described = "\n".join(f"{f} = {v}" for f, v in design.items())
        motivation = (f"{described}\n(A uniform draw from the grammar, draw {draws} at seed "
                      f"{context.seed}: the random-search control arm.)")  # fmt: skip
        origin = {"idea": "the whole design", "origin": "random",
                  "evidence": "every component drawn uniformly from the grammar"}  # fmt: skip
        code = self.grammar.render(design, docstring=motivation)
        return Proposal(f"random-{self.grammar.name(design)}", motivation, code, design,
                        [origin])  # fmt: skip

    def revise(self, source: str, error: str) -> str | None:
        """Never: a repair would be guidance the control arm does not get."""
        return None


def novelty_judgement(grammar: Grammar, record: Record, nearest_similarity: float,
                      population: Sequence[Record]) -> tuple[float, str]:  # fmt: skip
    """score = 1 + 9 * (0.5 * (1 - s) + 0.5 * min(1, h / 3)): s the motivation's similarity
    to the nearest earlier one, h the components in which the design differs from the
    nearest earlier design (3 with nothing to compare). It cannot judge soundness."""
    own = grammar.design_of(record)
    others = [d for r in population if r.id != record.id and (d := grammar.design_of(r))]
    distance = min((len(grammar.differences(own, d)) for d in others), default=3) if own else 3
    similarity = nearest_similarity if math.isfinite(nearest_similarity) else 0.0
    text_novelty = 1.0 - max(0.0, min(1.0, similarity))
    score = 1.0 + 9.0 * (0.5 * text_novelty + 0.5 * min(1.0, distance / 3))
    return score, (f"offline novelty: motivation similarity {similarity:.2f} to the nearest "
                   f"earlier one, {distance} component(s) from the nearest design")  # fmt: skip


# -- the analyser's task-free parts ------------------------------------------------------------


def describe(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """'component old->new, ...' or 'no change'."""
    return ", ".join(f"{f} {old}->{new}" for f, (old, new) in changes.items()) or "no change"


class GrammarAnalyser(abc.ABC):
    """The offline analyser's frame: a failed candidate's stage is read in the cognition
    entries' terms (so the researcher retrieves what addresses it); an evaluated one goes to
    the task's `evaluated`. Subclasses set the class attributes."""

    grammar: Grammar
    failure_summaries: Mapping[str, str]  # failure stage -> the situation, in entries' terms
    failure_default: str  # for a stage not in failure_summaries

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        described = describe(self.grammar.changes(parent, record))
        if record.status == "evaluated":
            return self.evaluated(record, parent, siblings, described)
        stage = record.failure_stage or "sandbox"
        reason = (record.failure_reason or "").strip().splitlines()
        report = (f"{record.name} failed at stage '{stage}' after changes [{described}]: "
                  f"{reason[-1] if reason else 'no reason given'}")  # fmt: skip
        lesson = f"{described} on {parent.name}: failed at {stage}" if parent else None
        return Analysis(report, self.failure_summaries.get(stage, self.failure_default), lesson)

    @abc.abstractmethod
    def evaluated(self, record: Record, parent: Record | None, siblings: Sequence[Record],
                  described: str) -> Analysis:  # fmt: skip
        """The analysis of an evaluated candidate; `described` says what it changed."""


class ParentComparison(NamedTuple):
    line: str  # for the report
    lesson: str
    d_loss: float
    d_benchmark: float


def compare_with_parent(record: Record, parent: Record | None, described: str,
                        benchmark: str) -> ParentComparison | None:  # fmt: skip
    """How loss, benchmark and fitness moved from an evaluated parent (None without one)."""
    if parent is None or parent.status != "evaluated" or parent.loss is None:
        return None
    d_loss = record.loss - parent.loss
    d_bench = record.benchmark - (parent.benchmark or 0.0)
    d_fit = (record.fitness - parent.fitness if record.fitness is not None
             and parent.fitness is not None else None)  # fmt: skip
    fitness = f", fitness {d_fit:+.3f}" if d_fit is not None else ""
    line = (f"vs parent {parent.name} [{described}]: loss {d_loss:+.4f}, {benchmark} "
            f"{d_bench:+.3f}{fitness}")  # fmt: skip
    verdict = ("helped" if d_loss < 0 and d_bench >= 0 else "hurt" if d_loss > 0 and
               d_bench <= 0 else f"traded loss against {benchmark}")  # fmt: skip
    lesson = (f"{described} on {parent.name} {verdict}: loss {d_loss:+.4f}, {benchmark} "
              f"{d_bench:+.3f}")  # fmt: skip
    return ParentComparison(line, lesson, d_loss, d_bench)


def siblings_line(record: Record, siblings: Sequence[Record]) -> str | None:
    """How many evaluated siblings scored higher (None without any)."""
    done = [s for s in siblings if s.status == "evaluated" and s.id != record.id]
    if not done:
        return None
    better = sum(1 for s in done if s.fitness is not None and record.fitness is not None
                 and s.fitness > record.fitness)  # fmt: skip
    return f"{better} of {len(done)} evaluated siblings scored higher"
