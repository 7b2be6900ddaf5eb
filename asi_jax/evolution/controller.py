"""The evolution loop: sample -> retrieve -> propose -> novelty -> check and train -> score ->
analyse -> store, with N candidates in flight, then verification of the best.

    leaderboard = evolve(config, workdir)      # or: with Controller(config, workdir) as c: c.run()

The controller knows no task: what candidates are, how they are checked and evaluated and
which figures the fitness reads come from `config.task` (`asi_jax.tasks`). It schedules and
records; SQL lives in `db`, read-only views in `state`, the leaderboard and progress lines
in `report`, the agents and their offline fallback in `agents.factory`, islands in `islands`,
the choice of the researcher's model per proposal in `bandit`.

The controller is the only writer of the database and holds the workdir for the whole run
(a second controller on the same workdir is refused at once). Evaluations run in sandboxed
worker processes, one per thread of a pool of `config.workers`: on this machine, or as Ray
tasks on a cluster's nodes with `backend="ray"` (`backends`). Everything a finished
evaluation produced is committed before the next step, so the run resumes after a kill at
any moment: evaluations still `pending` in the database (interrupted) are re-run from
scratch, finished ones are never repeated, and new proposals continue from the stored state.

In each stage the reference baseline runs first and alone: it is the yardstick of fitness
and of time. Its wall and CPU time set the stage's sandbox limits (see
`config.StageLimits`), and if it runs out of time at the configured floors it is retried
once at twice them before the run stops. A fatal error, Ctrl-C or SIGTERM cancels the
evaluations in flight (their sandboxes are killed, their rows stay pending) and the run
ends within seconds; `leaderboard.json` says when and why.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import datetime
import json
import math
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

import numpy as np

from asi_jax.agents.base import Proposal, Record, ResearchContext, component_effects
from asi_jax.agents.factory import Agents, Role, make_agents
from asi_jax.agents.llm import LLMError, LLMUnavailable, Transport
from asi_jax.candidates import isolation
from asi_jax.candidates.engineer import EngineerConfig, Result, code_hash, revise, run_candidate
from asi_jax.candidates.sandbox import Cancelled
from asi_jax.candidates.structure import ast_fingerprint
from asi_jax.cognition.embedders import make_embedder
from asi_jax.cognition.entries import ingest_asi_arch, load_jsonl, unique
from asi_jax.cognition.index import IndexConfig
from asi_jax.cognition.store import CognitionStore
from asi_jax.evolution import bandit, fitness, islands, report, state, steering
from asi_jax.evolution.backends import InfrastructureError, make_backend
from asi_jax.evolution.config import EvolutionConfig, split_stage
from asi_jax.evolution.db import DATABASE, Database
from asi_jax.evolution.novelty import NoveltyIndex
from asi_jax.evolution.sampling import sample
from asi_jax.provenance import environment_record
from asi_jax.report import page
from asi_jax.tasks import get_task
from asi_jax.tasks.base import Task
from asi_jax.train.config import ExperimentConfig, to_dict
from asi_jax.workdir import hold, is_remote

STAGES = state.STAGES
LEADERBOARD = report.LEADERBOARD
# Fields of the config a resumed run may change (recorded in the database when it does).
# Verification's promotions are made once: a changed `verify.promote` counts only before
# verification began; more `verify.seeds` add seeds to everything verified. Where
# evaluations run (backend, ray) changes no result: a run may resume on a cluster.
RESUMABLE_CHANGES = (
    "budget", "limits", "steering", "allow_llm_code_without_os_sandbox", "backend", "ray",
    "verify.promote", "verify.limits", "verify.seeds", "verify.hosts", "verify.confidence",
    "verify.bootstrap_resamples", "verify.ablate", "verify.max_ablations",
)  # fmt: skip
_CANCEL_GRACE_SECONDS = 10.0  # how long a stopping run waits for cancelled evaluations
_HEARTBEAT_SECONDS = 60.0  # a progress line at least this often while evaluations run


class EvolutionError(RuntimeError):
    pass


def _load_entries(config: EvolutionConfig, task: Task, warn: Callable[[str], None]):
    entries = load_jsonl(task.cognition_file)
    for path in config.cognition.extra_entries:
        p = Path(path)
        entries += load_jsonl(p) if p.suffix == ".jsonl" else ingest_asi_arch(p, warn=warn)
    return unique(entries)


def _changed_keys(stored: dict, current: dict) -> list[str]:
    """Config keys whose values differ: top-level, and `verify.x` within verification."""
    changed = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k), current.get(k)
        if a == b:
            continue
        if k == "verify" and isinstance(a, dict) and isinstance(b, dict):
            changed += [f"verify.{j}" for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
        else:
            changed.append(k)
    return changed


def _value(config: dict, key: str) -> Any:
    """A (dotted) key's value in a config dict; None where it is absent."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


@dataclasses.dataclass(frozen=True)
class _Attempt:
    """One proposal in the making: what the controller thread read for the researcher."""

    island: int
    researcher: Role
    context: ResearchContext
    round_number: int
    started: float
    proposal: int = 0  # proposals tried before this one
    arm: str = ""  # the researcher's endpoint the bandit chose ("": offline, no bandit)

    def run(self) -> tuple[Proposal | None, str | None, LLMError | None]:
        """(proposal, its author, None) or (None, None, the error): the researcher's call,
        which may wait on a model (the proposer thread)."""
        try:
            proposal, by = self.researcher.call("propose", self.context)
        except LLMError as e:
            return None, None, e
        return proposal, by, None


def _builds_on_parent(researcher: Role) -> bool:
    """False for a researcher that ignores the sampled parent (the random-search control
    arm): nothing is retrieved for it, and its candidates are recorded without a parent."""
    return getattr(researcher.agent, "builds_on_parent", True)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Controller:
    """One evolution run in `workdir`; use as a context manager (or call `close`), which
    releases the workdir and the database."""

    def __init__(self, config: EvolutionConfig, workdir: str | Path,
                 log: Callable[[str], None] = print, llm_transport: Transport | None = None
                 ) -> None:  # fmt: skip
        """`llm_transport` replaces the language models' network (a replay, see
        scripts/replay.py)."""
        self.config, self.log = config, log
        if is_remote(workdir):
            raise EvolutionError(
                f"an evolution run's workdir must be a local folder, not {str(workdir)!r}: its "
                "SQLite database and the sandboxes' folders need a file system. Training runs "
                "(scripts/train.py) and checkpoints can live on gs://"
            )
        self.task = get_task(config.task)
        self._exit = contextlib.ExitStack()
        try:
            self.workdir = self._exit.enter_context(hold(workdir, "evolution run"))
            self.isolation = self._sandbox_layers(config)
            self.backend = make_backend(config, self.workdir, self.log)  # before the database
            self._exit.callback(self.backend.close)
            self.db = Database(self.workdir / DATABASE)
            self._exit.callback(self.db.close)
            self._open(config, llm_transport)
        except BaseException:
            self._exit.close()
            raise

    def _sandbox_layers(self, config: EvolutionConfig) -> isolation.Isolation:
        """The OS layers this machine gives the sandbox, printed; without them, model-written
        code runs only where the user accepted the risk."""
        layers = isolation.detect()
        self.log(layers.describe())
        if layers.complete:
            return layers
        uses_llm = "llm" in {config.agents_of(i) for i in range(config.islands.count)}
        if uses_llm and not config.allow_llm_code_without_os_sandbox:
            raise EvolutionError(
                "this machine lacks the sandbox's OS layers, so model-written candidates would "
                f"run behind the audit hook alone ({'; '.join(layers.problems)}); fix that, or "
                "accept the risk with --config.allow_llm_code_without_os_sandbox=True"
            )
        self.log("sandbox: running without the OS layers (the offline grammar's candidates are "
                 "our own code; model-written ones would need them)")  # fmt: skip
        return layers

    def _open(self, config: EvolutionConfig, llm_transport: Transport | None) -> None:
        current = json.loads(json.dumps(to_dict(config)))
        stored = self.db.get_meta("config")
        if stored is None:
            self.db.set_meta("config", current)
            self.db.set_meta("wall_seconds", 0.0)
        elif changed := _changed_keys(stored, current):
            if refused := [k for k in changed if k not in RESUMABLE_CHANGES]:
                raise EvolutionError(
                    f"{self.workdir} holds a run with a different configuration (keys "
                    f"{refused}); resume with the same config (only {list(RESUMABLE_CHANGES)} "
                    "may change), or use a new workdir"
                )
            self.db.set_meta("config_changes", [
                *(self.db.get_meta("config_changes") or []),
                {"at": _now(), **{k: {"from": _value(stored, k), "to": _value(current, k)}
                                  for k in changed}},
            ])  # fmt: skip
            self.db.set_meta("config", current)
            self.log(f"resuming with changed {', '.join(changed)} (recorded)")
        # Software, git revision and sandbox of every start (a resumed run may differ). Not
        # devices: the controller never initialises an accelerator, which would take most of a
        # GPU's memory from the sandboxed workers; each training run's run.json records its own.
        start = {**environment_record(devices=False), "isolation": self.isolation.to_json()}
        self.db.set_meta("environments", [*(self.db.get_meta("environments") or []), start])
        self.embedder = make_embedder(config.cognition.embedder)
        self.cognition = CognitionStore(
            _load_entries(config, self.task, self.log), self.embedder,
            self.workdir / "cognition_index",
            IndexConfig(brute_force_limit=config.cognition.exact_search_limit),
            warn=self.log,
        )  # fmt: skip
        kinds = sorted({config.agents_of(i) for i in range(config.islands.count)})
        self._calls: SimpleQueue = SimpleQueue()  # CallRecords, to the database
        self._exit.callback(self._drain_calls)  # before the database closes
        self._agents = {kind: make_agents(kind, config.llm, self.task, self.log,
                                          calls=self._calls.put, transport=llm_transport)
                        for kind in kinds}  # fmt: skip
        self.novelty = NoveltyIndex(self.embedder, self.db,
                                    [c["motivation"] for c in self.db.candidates()])  # fmt: skip
        self._wall_before = float(self.db.get_meta("wall_seconds") or 0.0)
        self._started = time.monotonic()
        self._researcher_exhausted = False
        self._rejections_in_row = 0  # proposals rejected since the last accepted one
        self._unanswered = 0  # proposals in a row whose model gave no answer (LLMUnavailable)
        self._paused_until = 0.0  # monotonic time before which no proposal is made
        self._llm_unavailable: str | None = None  # set after too many unanswered proposals
        self._fingerprints: dict[str, str] = {}  # code hash -> normalised-AST fingerprint
        self._researcher_usd = 0.0  # dollars of researcher calls since the last proposal
        self._cancel = threading.Event()  # set when the run stops: kills sandboxes in flight
        self.steering = steering.Steering(self.db, self.workdir, config.steering,
                                          steering.options_of(self.task), self.log)  # fmt: skip
        self._held = ""  # what the loop last said it waits for (logged once)
        self._state: dict[str, Any] | None = None  # running / finished / failed / interrupted

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------
    def agents(self, island: int = 0) -> Agents:
        return self._agents[self.config.agents_of(island)]

    def experiment(self, stage: str) -> ExperimentConfig:
        return self.config.experiment_of(stage)

    def engineer_config(self, stage: str, slot: int = 0, *, reference: bool = False
                        ) -> EngineerConfig:  # fmt: skip
        """The reference baseline runs at the configured floors, retried once at twice them
        if it runs out of time; everything else at the stage's limits (see `stage_limits`)."""
        c = self.config
        usage = None if reference else state.reference_usage(self.db, split_stage(stage)[0])
        known = ()  # in verification every candidate has been checked (and found) before
        if stage == "explore":
            known = tuple((jaxpr, r["name"]) for r in self.db.evaluations("explore")
                          if (jaxpr := ((r["check_report"] or {}).get("structure")
                                        or {}).get("jaxpr")))  # fmt: skip
        return EngineerConfig(task=c.task, check=c.check, train=self.experiment(stage),
                              known_structures=known,
                              limits=c.limits_of(stage).for_stage(usage, c.workers),
                              limit_retries=1 if reference else 0,
                              reference=c.reference_baseline,
                              max_attempts=c.max_attempts,
                              hosts=c.verify.hosts if split_stage(stage)[0] == "verify" else 1,
                              visible_devices=str(slot) if c.pin_devices else None)  # fmt: skip

    def records(self, stage: str, status: str | None = None) -> list[Record]:
        return state.records(self.db, stage, status)

    def ranked(self, stage: str) -> list[Record]:
        return state.ranked(self.db, stage)

    def elapsed(self) -> float:
        return self._wall_before + time.monotonic() - self._started

    def budget_left(self) -> str | None:
        """None while exploration may continue, else which budget ran out."""
        if used := state.budget_used(self.db, self.config, self.elapsed()):
            return used
        if self._llm_unavailable:
            return self._llm_unavailable
        if self._researcher_exhausted:
            return "the researcher found no novel design"
        return None

    # -- generation 0 ----------------------------------------------------------------------
    def seed_baselines(self) -> None:
        """Baselines are candidates of generation 0 (reference first) and members of every
        island, queued for exploration and judged among themselves (each against the
        others). A reference baseline that failed in an earlier start is queued again:
        nothing can be scored without it, and the user may have raised the limits since."""
        reference = self.config.reference_baseline
        names = [reference] + [b for b in self.config.baselines if b != reference]
        offered = self.task.baselines()
        for name in names:
            if (existing := self.db.candidate_by_name(name)) is not None:
                if name == reference:
                    for stage in STAGES:
                        if self.db.status(existing["id"], stage) == "failed":
                            self.db.requeue(existing["id"], stage)
                            self.log(f"[{stage}] the reference baseline {name} failed in an "
                                     "earlier start; it runs again")  # fmt: skip
                continue
            baseline = offered[name]
            motivation = f"Baseline {name}: {baseline.description}"
            with self.db.transaction():
                cid = self.db.add_candidate(
                    name=name, generation=0, kind="baseline", researcher="baseline",
                    motivation=motivation, code=baseline.source,
                    code_hash=code_hash(baseline.source), design=baseline.design,
                )  # fmt: skip
                islands.add_baseline(self.db, self.config.islands, cid)
                self.db.start_evaluation(cid, "explore")
            self.novelty.add(motivation)
        if without := [n for n in names if offered[n].design is None]:
            self.log(f"baselines {without} have no design in the {self.task.name} grammar: "
                     "researchers that build on designs take other parents")  # fmt: skip

    def _judge(self, candidate_id: int) -> None:
        """Scores an explored candidate, as ASI-Arch's model judger does after training:
        its code and figures beside the evaluated baselines' (performance, innovation,
        complexity), against what came before it (a baseline: the other baselines)."""
        own = self.db.candidate(candidate_id)
        if own["kind"] == "baseline":
            earlier = [c for c in self.db.candidates()
                       if c["kind"] == "baseline" and c["id"] != candidate_id]  # fmt: skip
        else:
            earlier = [c for c in self.db.candidates() if c["id"] < candidate_id]
        index = NoveltyIndex(self.embedder, self.db, [c["motivation"] for c in earlier])
        similarity = index.nearest(own["motivation"])[1]
        explored = {r.id: r for r in self.records("explore")}
        population = [Record.from_row({**c, "status": "n/a"}) for c in earlier]
        baselines = [r for r in explored.values() if r.id != candidate_id
                     and r.status == "evaluated"
                     and self.db.candidate(r.id)["kind"] == "baseline"]  # fmt: skip
        (score, rationale), by = self.agents(own["island"]).judge.call(
            "judge", explored[candidate_id], nearest_similarity=similarity,
            population=population, baselines=baselines)  # fmt: skip
        self.db.set_judgement(candidate_id, by, score, rationale)

    def catch_up(self) -> None:
        """Finishes what a kill may have cut short between two commits: judgements, scores
        and analyses of candidates whose earlier steps are stored."""
        for r in self.records("explore"):
            if r.status == "evaluated" and self.db.judgement(r.id) is None:
                self._judge(r.id)
        for stage in STAGES:
            for seed_stage in self.config.stages_of(stage):
                self.score(seed_stage)
        analysed = self.db.analysed("explore")
        for r in self.records("explore"):
            if r.status != "pending" and r.id not in analysed:
                self._analyse(r.id)

    # -- proposing --------------------------------------------------------------------------
    def _parents(self, island: int, researcher) -> list[Record]:
        """The island's scored explored members, fittest first; only those with a design for
        a researcher that builds on designs (the offline grammar)."""
        ranked = state.ranked(self.db, "explore", self.db.members(island))
        if getattr(researcher, "needs_design", False):
            ranked = [r for r in ranked if r.design]
        return ranked

    def propose(self) -> dict | None:
        """A new candidate, stored and queued for exploration; None when the reference
        baseline is not scored yet, a budget is used up, the researcher is exhausted or its
        model is unavailable. Waits out an outage's pause. (The run itself proposes through
        the same two steps, with the model's call in its own thread: `run_stage`.)"""
        while True:
            attempt = self._begin_proposal()
            if attempt is None:
                pause = self._paused_until - time.monotonic()
                if pause > 0 and self.budget_left() is None:
                    time.sleep(pause)
                    continue
                return None
            if (candidate := self._finish_proposal(attempt, attempt.run())) is not None:
                return candidate

    def _with_analysis(self, record: Record) -> Record:
        analysis = self.db.analysis(record.id, "explore")
        return dataclasses.replace(record, analysis=analysis["report"] if analysis else None)

    def _relevant_lessons(self, summary: str, k: int = 8) -> list[str]:
        """The stored lessons closest to the problem at hand (by the cognition embedder),
        most relevant first, as ASI-Arch retrieves experience."""
        lessons = list(dict.fromkeys(self.db.lessons(limit=500)))
        if len(lessons) <= k:
            return lessons
        vectors = np.stack([self.novelty.embed(lesson) for lesson in lessons])  # cached
        query = self.embedder.embed([summary], "query")[0]
        order = np.argsort(-(vectors @ query), kind="stable")[:k]
        return [lessons[i] for i in order]

    def _begin_proposal(self) -> _Attempt | None:
        """What the researcher's next call needs, read from the database (controller thread);
        None when no proposal may be made now."""
        if (self.budget_left() is not None or time.monotonic() < self._paused_until
                or self.steering.paused()):  # fmt: skip
            return None
        if not any(r.name == self.config.reference_baseline for r in self.ranked("explore")):
            return None
        proposed = self.db.count_candidates("candidate")
        islands.migrate(self.db, self.config.islands, proposed, self.log)
        island = islands.next_island(self.config.islands, proposed)
        researcher = self.agents(island).researcher
        ranked = self._parents(island, researcher.agent)
        if not ranked:
            raise EvolutionError(f"island {island} has no scored member its researcher "
                                 f"{researcher.name} can build on (the baselines "
                                 f"{list(self.config.baselines)} have no design?)")  # fmt: skip
        tries = self.db.proposals_tried()
        rng = np.random.default_rng([self.config.seed, tries])
        parent, references = sample(ranked, self.config.sampling, rng)
        analysis = self.db.analysis(parent.id, "explore")
        summary = analysis["problem_summary"] if analysis else "no analysis yet"
        seed = int(rng.integers(2**31))
        modes, weights = zip(*self.config.edit_modes, strict=True)
        mode = str(rng.choice(modes, p=np.asarray(weights) / sum(weights)))
        others = [r for r in ranked if r.id != parent.id]
        second = others[int(rng.integers(len(others)))] if mode == "crossover" and others else None
        if mode == "crossover" and second is None:
            mode = "full"  # a population of one has no second parent
        arm = ""
        if arms := self.agents(island).researchers:
            names = [name for name, _ in arms]
            arm = bandit.choose(self.config.llm.bandit, bandit.arms(names, self.db.pulls()), rng)
            researcher = dict(arms)[arm]
        context = ResearchContext(
            parent=self._with_analysis(parent),
            references=[self._with_analysis(r) for r in references],
            cognition=self.cognition.retrieve(summary, self.config.cognition.top_k)
            if _builds_on_parent(researcher) else (),
            problem_summary=summary, lessons=self._relevant_lessons(summary),
            component_effects=component_effects(self.records("explore"),
                                                self.task.design_changes),
            known_designs=frozenset(self.task.design_key(c["design"])
                                    for c in self.db.candidates() if c["design"]),
            seed=seed, mode=mode,
            second_parent=second and self._with_analysis(second),
            notes=self.steering.notes(), rules=self.steering.rules(),
        )  # fmt: skip
        return _Attempt(island, researcher, context, proposed + 1, time.monotonic(), tries, arm)

    def _finish_proposal(self, attempt: _Attempt, outcome: tuple) -> dict | None:
        """Checks and stores the researcher's answer (controller thread): the new candidate,
        queued for exploration, or None (rejected, recorded; or no answer)."""
        proposal, by, error = outcome
        self._drain_calls()
        usd, self._researcher_usd = self._researcher_usd, 0.0  # this proposal's calls
        round_number = attempt.round_number
        if isinstance(error, LLMUnavailable):
            self._pull(attempt, None, "unanswered", usd)
            self._unanswered += 1
            llm = self.config.llm
            self.log(f"[explore] the researcher's model did not answer ({error}); "
                     f"{self._unanswered} proposal(s) in a row")  # fmt: skip
            if self._unanswered >= llm.stop_after_failures:
                self._llm_unavailable = f"LLM unavailable: {error}"
                self.log(
                    f"[explore] {self._unanswered} proposals in a row got no answer: "
                    "stopping the run once the evaluations in flight are recorded"
                )
            elif self._unanswered >= llm.pause_after_failures:
                self._paused_until = time.monotonic() + llm.pause_seconds
                self.log(f"[explore] proposing paused for {llm.pause_seconds:g} s")
            return None
        self._unanswered = 0
        reason = None
        if error is not None:  # an unusable reply: recorded, and the next try goes on
            reason, name, motivation = f"researcher error: {error}", "-", ""
        else:
            name, motivation = proposal.name, proposal.motivation
            novel, nearest, similarity = self.novelty.check(
                proposal.motivation, self.config.novelty_threshold
            )
            digest = code_hash(proposal.code)
            design = proposal.design and self.task.design_key(proposal.design)
            candidates = self.db.candidates()
            known = {self.task.design_key(c["design"]) for c in candidates if c["design"]}
            twin = self._structural_twin(proposal.code, candidates)
            steered = self.steering.violation(
                name, proposal.design or self.task.design_of(proposal.code), proposal.code
            )
            if steered is not None:
                reason = steered
            elif digest in {c["code_hash"] for c in candidates} or design in known:
                reason = "duplicate of an earlier design"
            elif twin is not None:
                reason = (f"structural duplicate of {twin} (the same program up to comments, "
                          "names and layout)")  # fmt: skip
            elif not novel:
                reason = (f"motivation {similarity:.3f} similar to "
                          f"{candidates[nearest]['name']}")  # fmt: skip
        if reason:
            with self.db.transaction():
                self.db.add_rejection(round_number, name, reason, motivation)
                self._pull(attempt, None, "rejected", usd)
                self.steering.saw(attempt.context.notes, attempt.proposal + 1, name,
                                  f"rejected: {reason}")  # fmt: skip
            self.log(f"[explore] rejected {name}: {reason}")
            self._rejections_in_row += 1
            if self._rejections_in_row >= self.config.max_proposal_tries:
                self._researcher_exhausted = True
                self.log(f"[explore] {self._rejections_in_row} proposals in a row were "
                         "rejected (the reasons are in the database's rejections); stopping "
                         "exploration")  # fmt: skip
            return None
        self._rejections_in_row = 0
        context = attempt.context
        name = proposal.name
        if self.db.candidate_by_name(name) is not None:
            name = f"{name}-{self.db.proposals_tried()}"
        second = context.second_parent if proposal.mode == "crossover" else None
        parent = context.parent if _builds_on_parent(attempt.researcher) else None
        with self.db.transaction():
            cid = self.db.add_candidate(
                name=name, generation=self._generation(parent) + 1 if parent else 1,
                round=round_number, kind="candidate", researcher=by,
                motivation=proposal.motivation, code=proposal.code, code_hash=digest,
                parent_id=parent and parent.id,
                reference_ids=[r.id for r in context.references] if parent else [],
                design=proposal.design, idea_origins=proposal.idea_origins,
                island=attempt.island, edit_mode=proposal.mode,
                second_parent_id=second.id if second else None,
            )  # fmt: skip
            self.db.add_member(attempt.island, cid, round_number, "proposed")
            self.db.start_evaluation(cid, "explore")
            self._pull(attempt, cid, "pending", usd)
            self.steering.saw(context.notes, attempt.proposal + 1, name, "proposed")
        self.db.add_timing(cid, "propose", time.monotonic() - attempt.started)
        self.novelty.add(proposal.motivation)
        return self.db.candidate(cid)

    def _pull(self, attempt: _Attempt, candidate_id: int | None, outcome: str,
              usd: float) -> None:  # fmt: skip
        """Stores the bandit's choice for `attempt`: pending its candidate's score, or (a
        rejected or unanswered proposal) rewarded 0 at once."""
        if attempt.arm:
            self.db.add_pull(attempt.proposal, attempt.arm, attempt.researcher.name,
                             candidate_id, outcome, usd,
                             None if outcome == "pending" else 0.0)  # fmt: skip

    def _reward_pulls(self, records: dict[int, Record]) -> None:
        """Rewards the pending pulls whose candidates are scored in exploration: fitness
        gained over the parent per dollar (`bandit.reward`); a failed candidate earns 0."""
        for pull in self.db.pulls("pending"):
            r = records.get(pull["candidate_id"])
            if r is None or r.fitness is None:
                continue
            parent = records.get(r.parent_id) if r.parent_id is not None else None
            if r.status == "failed" or parent is None or parent.fitness is None:
                self.db.set_reward(pull["id"], "failed", 0.0)
                continue
            gain = bandit.reward(r.fitness, parent.fitness, pull["cost_usd"],
                                 self.config.llm.bandit_epsilon_usd)  # fmt: skip
            self.db.set_reward(pull["id"], "scored", gain)

    def _structural_twin(self, code: str, candidates: list[dict]) -> str | None:
        """The earlier candidate whose source has `code`'s normalised AST, if any (computed
        by parsing only: nothing of the candidate runs here)."""
        try:
            own = ast_fingerprint(code)
        except SyntaxError:
            return None  # the engineer reports it, and the reviser may fix it
        for c in candidates:
            if c["code_hash"] not in self._fingerprints:
                source = self.task.candidate_source(Record.from_row({**c, "status": "n/a"}))
                try:
                    self._fingerprints[c["code_hash"]] = ast_fingerprint(source)
                except SyntaxError:
                    self._fingerprints[c["code_hash"]] = ""
            if self._fingerprints[c["code_hash"]] == own:
                return c["name"]
        return None

    def _drain_calls(self) -> None:
        """Stores the language-model calls recorded since the last drain (the sink is fed
        from the proposer and evaluation threads; only this thread writes the database)."""
        records = []
        while True:
            try:
                records.append(self._calls.get_nowait())
            except Empty:
                break
        if records:
            self._researcher_usd += sum(r.cost_usd for r in records if r.role == "researcher")
            with self.db.transaction():
                self.db.add_calls(records)

    def _generation(self, record: Record) -> int:
        return int(self.db.candidate(record.id)["generation"])

    # -- evaluating (in a worker thread: no database access) ---------------------------
    def evaluate(self, candidate: dict, stage: str, engineer: EngineerConfig,
                 reviser: Callable[[str, str], str | None]) -> Result:  # fmt: skip
        """Checks and trains one candidate in the sandbox under `engineer` (made by
        `engineer_config` in the controller thread, which alone reads the database). An
        error of the harness itself (not of the candidate) becomes a failed result too, so one
        bad evaluation cannot stop a long run. Raises `Cancelled` when the run is stopping."""
        try:
            return self._evaluate(candidate, stage, engineer, reviser)
        except Cancelled:
            raise
        except InfrastructureError as e:  # the backend's node died, past its retries
            return Result(False, "infrastructure", str(e), None, None, (), candidate["code"])
        except Exception as e:
            reason = "".join(traceback.format_exception(e))[-2000:]
            return Result(False, "engineer", reason, None, None, (), candidate["code"])

    def _evaluate(self, candidate: dict, stage: str, engineer: EngineerConfig,
                  reviser: Callable[[str, str], str | None]) -> Result:  # fmt: skip
        folder = report.folder(self.workdir, candidate, stage)
        if folder.exists():  # an interrupted earlier try: start it again from nothing
            shutil.rmtree(folder)
        if candidate["kind"] == "baseline":
            return run_candidate(candidate["code"], engineer, folder, baseline=candidate["name"],
                                 cancel=self._cancel, runner=self.backend.run_attempts)  # fmt: skip
        return revise(candidate["code"], reviser, engineer, folder, cancel=self._cancel,
                      runner=self.backend.run_attempts)  # fmt: skip

    # -- recording (controller thread) ---------------------------------------------------
    def record(self, candidate: dict, stage: str, result: Result) -> None:
        self._drain_calls()  # the reviser's calls during the evaluation
        cid = candidate["id"]
        figures = self.task.figures(result.train)
        loss, benchmark = figures.loss, figures.benchmark
        ok = result.ok and loss is not None and math.isfinite(loss)
        self.db.finish_evaluation(
            cid, stage, ok=ok,
            failure_stage=None if ok else (result.stage or "train"),
            failure_reason=None if ok else (result.reason or "no figures")[-2000:],
            loss=loss, benchmark=benchmark,
            params=(result.train or {}).get("params", {}).get("total"),
            metrics=result.train, check_report=result.check,
            compute_seconds=sum(a.seconds for a in result.attempts),
            attempts=[dataclasses.asdict(a) for a in result.attempts],
        )  # fmt: skip
        if result.source != candidate["code"] and candidate["kind"] == "candidate":
            self.db.replace_code(cid, result.source, code_hash(result.source),
                                 self.task.design_of(result.source))  # fmt: skip
        self.db.add_timing(cid, f"{stage}:evaluate", sum(a.seconds for a in result.attempts))
        if ok and state.is_reference(self.config, candidate) and split_stage(stage)[1] == 1:
            last = result.attempts[-1]
            usage = {"wall_seconds": last.seconds, "cpu_seconds": last.cpu_seconds}
            self.db.set_meta(
                "reference_usage", {**(self.db.get_meta("reference_usage") or {}), stage: usage}
            )
            limits = self.config.limits_of(stage).for_stage(usage, self.config.workers)
            self.log(f"[{stage}] {candidate['name']} took {last.seconds:.0f} s "
                     f"({last.cpu_seconds or 0:.0f} s of CPU): the stage's limits are "
                     f"{limits.wall_seconds:.0f} s of wall and {limits.cpu_seconds} s of CPU "
                     "time per evaluation")  # fmt: skip
        if stage == "explore" and ok:
            self._judge(cid)  # before scoring: the judge's term is part of the fitness
        self.score(stage)
        if stage == "explore":
            self._analyse(cid)
        self.db.set_meta("wall_seconds", self.elapsed())

    def score(self, stage: str) -> None:
        """Scores every evaluation of `stage` not yet scored, once the reference baseline of
        the same stage has figures."""
        by_name = {r.name: r for r in self.records(stage)}
        reference = by_name.get(self.config.reference_baseline)
        if reference is None or reference.status == "pending":
            return
        if reference.status == "failed":
            raise EvolutionError(
                f"the reference baseline {reference.name} failed in {stage}: "
                f"{reference.failure_stage}: {(reference.failure_reason or '')[-500:]}"
            )
        for r in by_name.values():
            if r.status == "pending" or r.fitness is not None:
                continue
            judgement = self.db.judgement(r.id)
            f = fitness.score(r, reference, judgement["score"] if judgement else 1.0,
                              self.config.fitness)  # fmt: skip
            self.db.set_score(r.id, stage, f.total, f.terms)
        if stage == "explore":
            self._reward_pulls({r.id: r for r in self.records(stage)})

    def _analyse(self, candidate_id: int) -> None:
        records = {r.id: r for r in self.records("explore")}
        record = records[candidate_id]
        parent = records.get(record.parent_id) if record.parent_id else None
        siblings = [r for r in records.values()
                    if r.parent_id == record.parent_id and r.parent_id is not None]  # fmt: skip
        started = time.monotonic()
        agents = self.agents(self.db.candidate(candidate_id)["island"])
        analysis, by = agents.analyser.call("analyse", record, parent, siblings)
        summary, summarised_by = agents.summariser.call("summarise", record, analysis)
        self.db.add_analysis(candidate_id, "explore", by, analysis.report, summary,
                             analysis.lesson, summarised_by)  # fmt: skip
        self.db.add_timing(candidate_id, "analyse", time.monotonic() - started)

    # -- stages -------------------------------------------------------------------------
    def _reference_pending(self, stage: str) -> bool:
        """Whether the reference's first-seed run of `stage`, which sets the stage's limits,
        has yet to finish."""
        reference = self.db.candidate_by_name(self.config.reference_baseline)
        return self.db.status(reference["id"], stage) == "pending"

    def _queue(self, stage: str) -> collections.deque:
        """(candidate, seed stage) of every pending evaluation of `stage`, first seed first."""
        return collections.deque((c, s) for s in self.config.stages_of(stage)
                                 for c in self.db.pending(s))  # fmt: skip

    def _next(self, stage: str, queue: collections.deque, running: dict
              ) -> tuple[dict, str] | None:  # fmt: skip
        """The next queued evaluation to start: while the reference baseline of the stage has
        not finished, only the reference (it runs alone, see the module docstring); nothing
        while the run is paused; in verification, a candidate awaiting approval waits."""
        if self.steering.paused():
            return None
        if self._reference_pending(stage):
            reference = next((item for item in queue if item[1] == stage
                              and state.is_reference(self.config, item[0])), None)  # fmt: skip
            if running or reference is None:
                return None
            queue.remove(reference)
            self.log(f"[{stage}] the reference baseline {reference[0]['name']} runs first and "
                     "alone: its time sets the stage's limits")  # fmt: skip
            return reference
        ready = next((item for item in queue if not self._awaits_approval(stage, item[0])), None)
        if ready is not None:
            queue.remove(ready)
        return ready

    def _awaits_approval(self, stage: str, candidate: dict) -> bool:
        return (stage == "verify" and self.config.steering.require_approval
                and candidate["kind"] == "candidate"
                and self.steering.verdict(candidate["name"]) != "approve")  # fmt: skip

    def _steer(self, stage: str, queue: collections.deque, running: dict, proposing: bool
               ) -> str | None:  # fmt: skip
        """Applies the steering inbox (a vetoed verification leaves the queue); returns what
        the stage waits for, if steering holds back work it has (logged once)."""
        self.steering.ingest(running=[c["id"] for c, *_ in running.values()])
        for item in [(c, s) for c, s in queue if self.db.status(c["id"], s) != "pending"]:
            queue.remove(item)  # its pending evaluation was dropped by a veto
        held = None
        work = queue or (proposing and self.budget_left() is None)
        if (who := self.steering.paused()) and work:
            held = f"paused by {who} (scripts/steer.py --workdir={self.workdir} resume)"
        elif waiting := list(dict.fromkeys(c["name"] for c, _ in queue
                                           if self._awaits_approval(stage, c))):  # fmt: skip
            held = (f"waiting for approval of {waiting} (scripts/steer.py "
                    f"--workdir={self.workdir} approve NAME, or veto NAME)")  # fmt: skip
        if held and held != self._held:
            self.log(f"[{stage}] {held}")
        self._held = held or ""
        return held

    def run_stage(self, stage: str, *, proposing: bool) -> None:
        """Runs the stage's queue, and (exploring) proposals whenever a worker is free. The
        researcher's call runs in its own thread, so an evaluation that finishes while a model
        thinks (or hangs until its timeout) is recorded at once."""
        queue = self._queue(stage)
        if queue:
            self.log(f"[{stage}] {len(queue)} evaluation(s) to run: "
                     + ", ".join(c["name"] if s == stage else f"{c['name']} ({s})"
                                 for c, s in queue))  # fmt: skip
        pool = cf.ThreadPoolExecutor(self.config.workers)
        proposer = cf.ThreadPoolExecutor(1, thread_name_prefix="proposer")
        running: dict[cf.Future, tuple[dict, str, int, float]] = {}
        proposal: tuple[cf.Future, _Attempt] | None = None
        free_slots = list(range(self.config.workers))
        heartbeat = time.monotonic()
        try:
            while True:
                held = self._steer(stage, queue, running, proposing)
                while free_slots:
                    if (item := self._next(stage, queue, running)) is None:
                        break
                    candidate, seed_stage = item
                    self.log(f"[{seed_stage}] start {report.describe(self.config, candidate)}")
                    slot = free_slots.pop(0)
                    reference = state.is_reference(self.config, candidate)
                    engineer = self.engineer_config(
                        seed_stage, slot, reference=reference and seed_stage == stage
                    )
                    reviser = self.agents(candidate["island"]).researcher.agent.revise
                    future = pool.submit(self.evaluate, candidate, seed_stage, engineer, reviser)
                    running[future] = (candidate, seed_stage, slot, time.monotonic())
                if (proposing and free_slots and proposal is None and not queue
                        and not self._reference_pending(stage)
                        and (attempt := self._begin_proposal()) is not None):  # fmt: skip
                    proposal = (proposer.submit(attempt.run), attempt)
                waiting = [*running, *([proposal[0]] if proposal else [])]
                pause = self._paused_until - time.monotonic()
                paused = proposing and pause > 0 and self.budget_left() is None
                timeout = min([_HEARTBEAT_SECONDS, *([pause] if paused else []),
                               *([self.config.steering.poll_seconds] if held else [])])  # fmt: skip
                if not waiting:
                    if not (paused or held):
                        break
                    time.sleep(timeout)
                    continue
                done, _ = cf.wait(waiting, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                if not done and running and time.monotonic() - heartbeat >= _HEARTBEAT_SECONDS:
                    heartbeat = time.monotonic()
                    self.log(report.heartbeat(
                        stage, {c["name"] if s == stage else f"{c['name']} ({s})": t
                                for c, s, _, t in running.values()},
                        self.elapsed(), time.monotonic()))  # fmt: skip
                for future in done:
                    if proposal is not None and future is proposal[0]:
                        attempt, proposal = proposal[1], None
                        if candidate := self._finish_proposal(attempt, future.result()):
                            queue.append((candidate, stage))
                        continue
                    candidate, seed_stage, slot, _ = running.pop(future)
                    free_slots.append(slot)
                    try:
                        self.record(candidate, seed_stage, future.result())
                    finally:  # failures too, and a reference failure that stops the run
                        self.write_leaderboard()
                    self.log(self.progress(seed_stage, candidate["id"]))
        except BaseException:
            self._cancel_running(running)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            proposer.shutdown(wait=False, cancel_futures=True)
        if proposing and (reason := self.budget_left()):
            self.log(f"[{stage}] done: {reason}")

    def _cancel_running(self, running: dict[cf.Future, tuple[dict, str, int, float]]) -> None:
        """Kills the sandboxes of the evaluations in flight and waits (briefly) for their
        threads; their rows stay pending, so a resumed run redoes them."""
        self._cancel.set()
        if running:
            self.log(f"stopping: cancelling {len(running)} evaluation(s) in flight: "
                     + ", ".join(c["name"] for c, *_ in running.values()))  # fmt: skip
            cf.wait(running, timeout=_CANCEL_GRACE_SECONDS)

    def promote(self) -> None:
        """Queues the top candidates by exploration fitness and every baseline for
        verification on every seed, skipping candidates a human vetoed. The choice is made
        once (a resumed run keeps it); a resumed run with more `verify.seeds` queues the new
        seeds of everything verified."""
        chosen = self.db.get_meta("verify_promoted")
        if chosen is None:
            top = [r.name for r in self.ranked("explore")
                   if self.db.candidate(r.id)["kind"] == "candidate"
                   and self.steering.verdict(r.name) != "veto"]  # fmt: skip
            chosen = top[: self.config.verify.promote]
            self.log(f"[verify] promoted {chosen} with the baselines, "
                     f"{self.config.verify.seeds} seed(s) each")  # fmt: skip
        verified = [c for c in self.db.candidates()
                    if c["kind"] in ("baseline", "ablation") or c["name"] in chosen]  # fmt: skip
        with self.db.transaction():
            for c in verified:
                for stage in self.config.stages_of("verify"):
                    if self.db.status(c["id"], stage) is None:  # judged once, in exploration
                        self.db.start_evaluation(c["id"], stage)
            self.db.set_meta("verify_promoted", chosen)

    def _free_form_variants(self, winner: dict, reference: dict
                            ) -> list[tuple[str, None, str]]:  # fmt: skip
        researcher = self.agents(winner["island"]).researcher.agent
        if not hasattr(researcher, "ablations"):
            return []
        records = {r.id: self._with_analysis(r) for r in self.records("verify")}
        try:
            variants = researcher.ablations(records[winner["id"]], records[reference["id"]],
                                            self.config.verify.max_ablations or 4)  # fmt: skip
        except LLMError as e:
            self.log(f"[verify] no ablations of {winner['name']}: {researcher.name} "
                     f"failed ({e})")  # fmt: skip
            return []
        finally:
            self._drain_calls()
        seen: set[str] = set()
        unique = [(c, code) for c, code in variants if not (c in seen or seen.add(c))]
        return [(change, None, code) for change, code in unique]

    def ablate(self) -> bool:
        """Adds the ablation variants of every verified winner not yet ablated, queued on
        every verification seed; True when it added any. A winner with a design in the
        task's grammar gets one variant per component it does not share with the reference,
        that component set back to the reference's option."""
        if not self.config.verify.ablate:
            return False
        reference = self.config.reference_baseline
        winners = self.write_leaderboard()["verify"][f"beats_{reference}"]
        ablations = self.db.get_meta("ablations") or {}  # winner -> {change: variant's name}
        added = False
        for name in [w for w in winners if w not in ablations]:
            winner = self.db.candidate_by_name(name)
            table = {}
            with self.db.transaction():
                for label, design, code in self._ablation_variants(winner):
                    if code is None:  # the reference itself: its runs are this variant's
                        table[label] = reference
                        continue
                    table[label] = f"ablate-{winner['id']}-{len(table) + 1}"
                    cid = self.db.add_candidate(
                        name=table[label], generation=winner["generation"], kind="ablation",
                        island=winner["island"],
                        researcher="ablation", parent_id=winner["id"], design=design,
                        motivation=f"Ablation of {name}: {label}; everything else kept.",
                        code=code, code_hash=code_hash(code),
                    )  # fmt: skip
                    for stage in self.config.stages_of("verify"):
                        self.db.start_evaluation(cid, stage)
                    added = True
                ablations = {**ablations, name: table}
                self.db.set_meta("ablations", ablations)
            listed = ", ".join(table) or "none (no design to ablate)"
            self.log(f"[verify] {name} beats {reference} (its gain's interval lies above "
                     f"zero); ablations: {listed}")  # fmt: skip
        return added

    def _ablation_variants(self, winner: dict) -> list[tuple[str, dict | None, str | None]]:
        """(change, design, source) per component of `winner` that differs from the
        reference's design, set back to the reference's option; the source is None where
        that gives the reference's own design. Where either has no design in the task's
        grammar, the researcher's single-change variants of the winner's code (none from a
        researcher that writes none, or whose model fails)."""
        reference = self.db.candidate_by_name(self.config.reference_baseline)
        grammar = self.task.grammar()
        if grammar is None or not winner["design"] or not reference["design"]:
            return self._free_form_variants(winner, reference)
        changes = self.task.design_changes(winner["design"], reference["design"])
        limit = self.config.verify.max_ablations or len(changes)
        variants = []
        for component, (own, option) in list(changes.items())[:limit]:
            design = {**winner["design"], component: option}
            label = f"{component}: {own} -> {option}"
            if self.task.design_key(design) == self.task.design_key(reference["design"]):
                variants.append((label, design, None))
                continue
            source = grammar.render(grammar.canonical(design), docstring=(
                f"Ablation of {winner['name']}: {label}, the reference's option."))  # fmt: skip
            variants.append((label, design, source))
        return variants

    def run(self) -> dict[str, Any]:
        """The whole run (or what is left of it); returns the leaderboard. On an error or an
        interruption the leaderboard records it, and the exception propagates."""
        self._state = {"state": "running", "reason": None, "at": _now()}
        try:
            self.steering.ingest()  # what was given while no run was going
            self.seed_baselines()
            self.catch_up()
            self.write_leaderboard()
            self.run_stage("explore", proposing=True)
            if self._llm_unavailable:
                raise EvolutionError(self._llm_unavailable)
            if self.config.verify.promote > 0:
                self.promote()
                self.run_stage("verify", proposing=False)
                if self.ablate():
                    self.run_stage("verify", proposing=False)
        except BaseException as e:
            interrupted = isinstance(e, KeyboardInterrupt)
            self._state = {"state": "interrupted" if interrupted else "failed",
                           "reason": "interrupted" if interrupted else str(e) or repr(e),
                           "at": _now()}  # fmt: skip
            self.write_leaderboard()
            self.write_report()
            raise
        self._state = {"state": "finished", "reason": self.budget_left(), "at": _now()}
        board = self.write_leaderboard()
        self.log(f"leaderboard: {self.workdir / LEADERBOARD}")
        self.log(f"report: {self.write_report()}")
        return board

    # -- reporting --------------------------------------------------------------------------
    def write_leaderboard(self) -> dict[str, Any]:
        self._drain_calls()
        board = report.leaderboard(self.db, self.config, self.task, self.workdir,
                                   agents=self.agents(0).names(), run=self._state,
                                   wall_seconds=self.elapsed())  # fmt: skip
        report.write(board, self.workdir)
        return board

    def write_report(self) -> Path | None:
        """Writes the run's HTML report (`scripts/report.py`'s page) into the workdir; a
        report that cannot be written is logged, never the run's failure."""
        path = self.workdir / page.REPORT
        try:
            page.write(page.render(self.db, self.workdir), path)
        except Exception as e:  # the run's results are in the database either way
            self.log(f"the report could not be written: {type(e).__name__}: {e}")
            return None
        return path

    def progress(self, stage: str, candidate_id: int) -> str:
        return report.progress(self.db, self.config, self.task, stage, candidate_id,
                               elapsed=self.elapsed(),
                               finished_proposing=self._researcher_exhausted
                               or self.budget_left() is not None)  # fmt: skip


def evolve(config: EvolutionConfig, workdir: str | Path,
           log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Runs (or resumes) the evolution in `workdir`; returns the leaderboard."""
    with Controller(config, workdir, log) as controller:
        return controller.run()
