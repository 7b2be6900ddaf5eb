"""The random-search control arm: the uniform grammar sampler for both tasks (valid,
distinct, uniform, reproducible), the "random" agent kind in configs and runs (a run of its
own, and an island beside the loop), the comparison analyses and the report's control
section with scripts/report.py --control. Runs stub the sandbox (seconds)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_evolution_control import StubWorker, _config

from asi_jax.agents.base import Record, ResearchContext
from asi_jax.agents.factory import make_agents
from asi_jax.agents.grammar_search import RandomResearcher
from asi_jax.agents.llm import LLMConfig
from asi_jax.candidates import engineer
from asi_jax.candidates.policy import check_source
from asi_jax.evolution import analyses
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.evolution.db import Database
from asi_jax.report import page, source
from asi_jax.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("linear_attention", "optimizer")
# Components the canonical form never resets, so their options stay uniform after it.
FREE = {"linear_attention": ("rule", "feature_map", "conv", "output_norm", "output_gate",
                             "head_mix"),
        "optimizer": ("direction", "clip", "weight_decay", "trust_ratio", "lr_scale")}  # fmt: skip
PARENT = Record(1, "deltanet", None, "a parent", "# code\n", None, "evaluated", fitness=1.0)


def _context(seed: int, known: frozenset[str] = frozenset()) -> ResearchContext:
    return ResearchContext(PARENT, [], [], "no analysis yet", [], {}, known, seed)


@pytest.mark.parametrize("name", TASKS)
def test_the_random_researcher_draws_valid_uniform_designs(name):
    task = get_task(name)
    grammar = task.grammar()
    researcher = RandomResearcher(grammar)
    draws = 1200
    counts = {f: dict.fromkeys(grammar.options[f], 0) for f in FREE[name]}
    for seed in range(draws):
        p = researcher.propose(_context(seed))
        if seed < 20:  # valid: canonical, renders to a candidate the policy accepts
            assert p.design == grammar.canonical(p.design)
            assert task.design_of(p.code) == p.design
            assert check_source(p.code, task.policy) == []
            assert p.idea_origins[0]["origin"] == "random" and "uniform draw" in p.motivation
        for field in FREE[name]:
            counts[field][p.design[field]] += 1
    for field, by_option in counts.items():
        share = 1 / len(by_option)
        bound = 4.5 * math.sqrt(share * (1 - share) / draws)  # ~4.5 standard errors
        for option, n in by_option.items():
            assert abs(n / draws - share) < bound, (field, option, n, draws)


@pytest.mark.parametrize("name", TASKS)
def test_the_random_researcher_avoids_proposed_designs_and_is_reproducible(name):
    task = get_task(name)
    researcher = RandomResearcher(task.grammar())
    known: set[str] = set()
    for seed in range(80):
        p = researcher.propose(_context(seed, frozenset(known)))
        key = task.design_key(p.design)
        assert key not in known
        known.add(key)
        again = RandomResearcher(task.grammar()).propose(_context(seed, frozenset(known - {key})))
        assert again == p  # the seed and the known designs decide the draw
    assert researcher.revise("# code\n", "NaN") is None  # no repairs: that would be guidance


def test_configs_take_the_random_kind_and_refuse_it_without_a_grammar():
    assert _config(agents="random").agents == "random"
    both = _config(islands={"count": 2, "agents": ("offline", "random")})
    assert [both.agents_of(i) for i in range(2)] == ["offline", "random"]
    with pytest.raises(ValueError, match=r"agents must be one of \['offline', 'llm', 'random'\]"):
        _config(agents="randm")
    with pytest.raises(ValueError, match="not among"):
        _config(islands={"count": 2, "agents": ("offline", "rand")})
    sys.path.insert(0, str(Path(__file__).parent))
    import toy_task  # noqa: F401  (registers the task "toy", which has no grammar)

    with pytest.raises(ValueError, match="the task toy has none"):
        _config(task="toy", baselines=(), agents="random")
    with pytest.raises(ValueError, match="the task toy has none"):
        make_agents("random", LLMConfig(), get_task("toy"))
    agents = make_agents("random", LLMConfig(), get_task("optimizer"))
    assert agents.researcher.name == "random-grammar-sampler"
    assert agents.judge.name.startswith("offline") and agents.analyser.name.startswith("offline")


def _evolve(workdir: Path, **overrides) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engineer, "run_worker", StubWorker())
        with Controller(_config(**overrides), workdir, log=lambda x: None) as c:
            c.run()


def _designs(workdir: Path) -> list[tuple[str, str]]:
    db = Database(workdir / DATABASE)
    try:
        return [(c["name"], c["researcher"]) for c in db.candidates() if c["kind"] == "candidate"]
    finally:
        db.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A loop run, a control run of the same config, and one run with both as islands."""
    root = tmp_path_factory.mktemp("runs")
    out = {"loop": root / "loop", "random": root / "random", "islands": root / "islands"}
    _evolve(out["loop"], budget={"candidates": 4})
    _evolve(out["random"], budget={"candidates": 4}, agents="random")
    _evolve(out["islands"], budget={"candidates": 4}, islands={
        "count": 2, "agents": ("offline", "random"), "migration_interval": 0})  # fmt: skip
    return out


def test_a_control_run_proposes_uniform_draws_without_parents(runs):
    db = source.open_run(runs["random"])
    try:
        candidates = [c for c in db.candidates() if c["kind"] == "candidate"]
        assert len(candidates) == 4
        for c in candidates:
            assert c["researcher"] == "random-grammar-sampler" and c["parent_id"] is None
            assert c["generation"] == 1 and c["idea_origins"][0]["origin"] == "random"
            assert db.judgement(c["id"])["judge"].startswith("offline")
            assert db.analysis(c["id"], "explore")["analyser"].startswith("offline")
        verified = {r["name"] for r in analyses.stage_rows(db, "verify")}
        assert verified & {c["name"] for c in candidates}  # its top candidate was verified
    finally:
        db.close()


def test_a_resumed_control_run_draws_what_an_uninterrupted_one_does(runs, tmp_path):
    workdir = tmp_path / "resumed"
    _evolve(workdir, budget={"candidates": 2}, agents="random", verify={"promote": 0})
    _evolve(workdir, budget={"candidates": 4}, agents="random", verify={"promote": 0})
    assert _designs(workdir) == _designs(runs["random"])


def test_islands_run_the_loop_beside_the_control_on_shared_baselines(runs):
    db = source.open_run(runs["islands"])
    try:
        assert db.migrations() == []
        baselines = [c for c in db.candidates() if c["kind"] == "baseline"]
        assert len(baselines) == 2  # evaluated once, members of both islands
        assert all(b["id"] in db.members(0) and b["id"] in db.members(1) for b in baselines)
        proposed = [c for c in db.candidates() if c["kind"] == "candidate"]
        by_island = {i: {c["researcher"] for c in proposed if c["island"] == i} for i in (0, 1)}
        assert by_island == {0: {"offline-grammar-researcher"}, 1: {"random-grammar-sampler"}}
        arms = analyses.island_arms(db)
        assert [a.label for a in arms] == ["island 0 (offline)", "island 1 (random)"]
        assert [a.candidates for a in arms] == [2, 2]
        explored = analyses.stage_rows(db, "explore")
        base = sum(r["compute_seconds"] for r in explored if r["kind"] == "baseline")
        for i, a in enumerate(arms):  # the baselines' compute counts in both arms
            own = sum(r["compute_seconds"] for r in explored if r["kind"] == "candidate"
                      and r["island"] == i)  # fmt: skip
            assert a.compute_seconds[-1] == pytest.approx(base + own)
    finally:
        db.close()


# -- the comparison on a database by hand: exact numbers --------------------------------------
def _add(db, name, island, explore, verify=None, *, kind="candidate", judge=0.0, ok=True):
    """`explore`, `verify`: (quantitative terms, compute seconds) of each stage it ran; in
    verification the same figures on two seeds, each taking half the seconds."""
    cid = db.add_candidate(name=name, generation=0 if kind == "baseline" else 1, kind=kind,
                           researcher="test", motivation=name, code=f"# {name}\n",
                           code_hash=name, island=island)  # fmt: skip
    half = verify and (verify[0], verify[1] / 2)
    for stage, figures in (("explore", explore), ("verify", half), ("verify-2", half)):
        if figures is None:
            continue
        q, seconds = figures
        db.start_evaluation(cid, stage)
        db.finish_evaluation(cid, stage, ok=ok, failure_stage=None if ok else "train",
                             failure_reason=None if ok else "boom", loss=1.0, benchmark=0.5,
                             params=10, metrics={}, check_report={}, compute_seconds=seconds,
                             attempts=[])  # fmt: skip
        if ok:
            terms = {"loss": q / 2, "benchmark": q / 2, "judge": judge if stage == "explore"
                     else 0.0}  # fmt: skip
            db.set_score(cid, stage, sum(terms.values()), terms)
        time.sleep(0.002)  # distinct finishing times
    return cid


def test_arms_count_best_fitness_and_verified_wins_against_compute(tmp_path):
    """ref; island 0: a (wins in verification), d (failed); island 1: b (the best explored
    fitness by its judge term, loses in verification), c (not verified)."""
    db = Database(tmp_path / "hand.sqlite")
    db.set_meta("config", {"reference_baseline": "ref",
                           "islands": {"agents": ["offline", "random"]}})  # fmt: skip
    _add(db, "ref", 0, (1.0, 10), (1.0, 20), kind="baseline")
    _add(db, "a", 0, (1.2, 20), (1.3, 40))
    _add(db, "b", 1, (0.8, 30), (0.9, 40), judge=5.0)
    _add(db, "c", 1, (1.5, 5))
    _add(db, "d", 0, (1.0, 5), ok=False)
    assert analyses.verified_wins(db) == ["a"]
    zero, one = analyses.island_arms(db)
    assert (zero.label, zero.compute_seconds, zero.proposed) == (
        "island 0 (offline)",
        [10, 30, 35],
        [0, 1, 2],
    )
    assert zero.best == [None, pytest.approx(1.2), pytest.approx(1.2)] and zero.wins == [0, 1, 1]
    assert (zero.verify_seconds, zero.verified, zero.total_seconds) == (60, ["a"], 95)
    assert zero.best_verified == pytest.approx(1.3) and zero.candidates == 2
    assert one.compute_seconds == [10, 40, 45] and one.best == [None, 5.8, 5.8]
    assert one.wins == [0, 0, 0] and one.verified == [] and one.best_verified == 0.9
    whole = analyses.arm(db, "run")
    assert whole.compute_seconds[-1] == 70 and whole.candidates == 4 and whole.wins[-1] == 1
    db.set_meta("config", {"reference_baseline": "ref", "islands": {"agents": []}})
    assert analyses.island_arms(db) == []  # no random island: nothing to compare
    db.close()


# -- the report ------------------------------------------------------------------------------
def _section(text: str) -> str:
    return text[text.index('id="control"') : text.index('id="candidates"')]


def test_the_report_compares_a_run_with_its_control_run(runs):
    db, control = source.open_run(runs["loop"]), source.open_run(runs["random"])
    try:
        section = _section(page.render(db, runs["loop"], control=control))
        alone = _section(page.render(db, runs["loop"]))
    finally:
        db.close()
        control.close()
    assert "this run (offline)" in section and "control run (random)" in section
    assert section.count("<svg") == 3 and section.count("<polyline") == 6  # both arms, 3 charts
    assert "verified wins against compute" in section and "best verified fitness" in section
    assert "No control arm" in alone and "<svg" not in alone


def test_the_report_compares_a_runs_islands_by_itself(runs):
    db = source.open_run(runs["islands"])
    try:
        section = _section(page.render(db, runs["islands"]))
    finally:
        db.close()
    assert "island 0 (offline)" in section and "island 1 (random)" in section
    assert section.count("<polyline") == 6


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip


def test_script_control_flag(runs, tmp_path):
    out = tmp_path / "page.html"
    done = _script(f"--workdir={runs['loop']}", f"--control={runs['random']}", f"--output={out}")
    assert done.returncode == 0, done.stderr
    assert "control run (random)" in _section(out.read_text())
    other = tmp_path / "other"
    shutil.copytree(runs["random"], other)
    db = Database(other / DATABASE)
    db.set_meta("config", {**db.get_meta("config"), "task": "optimizer"})
    db.close()
    done = _script(f"--workdir={runs['loop']}", f"--control={other}")
    assert done.returncode == 2 and "nothing to compare" in done.stderr, done.stderr
