"""The optimizer task: its contract refuses escapes through optax and jax, its check passes the
baselines and names the stage each broken optimizer fails at, its grammar renders candidates
that pass the policy and the check, its agents propose and judge, and the trainer's optimizer
hook trains a candidate while leaving the default AdamW path as it was."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from asi_jax.agents.base import Record, ResearchContext, component_effects
from asi_jax.candidates.policy import check_source
from asi_jax.cognition.entries import CognitionEntry, load_jsonl
from asi_jax.cognition.store import Retrieved
from asi_jax.tasks import get_task
from asi_jax.tasks.optimizer import grammar
from asi_jax.tasks.optimizer.checker import CheckConfig, check_optimizer
from asi_jax.tasks.optimizer.contract import OPTIMIZER
from asi_jax.train.config import OptimConfig
from asi_jax.train.trainer import make_optimizer

TASK = get_task("optimizer")


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def load(source: str):
    """The factory of a candidate source, after the policy accepts it (as the worker does)."""
    assert check_source(source, OPTIMIZER) == [], check_source(source, OPTIMIZER)
    namespace: dict = {"__name__": "candidate"}
    exec(compile(source, "candidate.py", "exec"), namespace)
    return TASK.load(namespace)


HONEST = """
import typing

import jax
import jax.numpy as jnp
import optax


class State(typing.NamedTuple):
    count: jax.Array
    mu: typing.Any


def make_optimizer(learning_rate):
    def init(params):
        return State(jnp.zeros((), jnp.int32), optax.tree.zeros_like(params))

    def update(updates, state, params=None):
        mu = jax.tree.map(lambda m, g: 0.9 * m + g, state.mu, updates)
        step = -learning_rate(state.count)
        return jax.tree.map(lambda m: step * m, mu), State(state.count + 1, mu)

    return optax.GradientTransformation(init, update)
"""


def candidate(body: str, state: str = "optax.EmptyState()") -> str:
    """A candidate whose update returns `body` (an expression in `updates`)."""
    return (
        "import jax\nimport jax.numpy as jnp\nimport optax\n\n\n"
        "def make_optimizer(learning_rate):\n"
        f"    def init(params):\n        return {state}\n\n"
        "    def update(updates, state, params=None):\n"
        f"        return {body}, state\n\n"
        "    return optax.GradientTransformation(init, update)\n"
    )


# -- the contract -----------------------------------------------------------------------------


def test_honest_sources_pass_the_policy():
    assert check_source(HONEST, OPTIMIZER) == []
    for name in TASK.default_baselines:
        assert check_source(TASK.baselines()[name].source, OPTIMIZER) == []


_ESCAPES = {
    "optax.contrib.muon(learning_rate)": "reaches module optax.contrib",
    "optax.experimental": "experimental",
    "optax.losses.l2_loss": "reaches module optax.losses",
    "optax.tree_utils._state_utils": "private attributes",
    "optax._src.alias.adam(learning_rate)": "private attributes",
    "optax.adam.__globals__": "dunder",
    "jax.debug.callback": "runs Python or native code",
    "jax.pure_callback": "runs Python or native code",
    "jax.experimental.io_callback": "experimental",
    "jax.config": "process-wide state",
}


@pytest.mark.parametrize("expression", sorted(_ESCAPES))
def test_escapes_through_optax_and_jax_are_refused(expression):
    source = (
        "import jax\nimport optax\n\n\ndef make_optimizer(learning_rate):\n"
        f"    return {expression}\n"
    )
    violations = check_source(source, OPTIMIZER)
    assert any(_ESCAPES[expression] in str(v) for v in violations), violations


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from optax import contrib\n", "reaches module optax.contrib"),
        ("import optax.contrib\n", "optax.contrib is not an allowed import"),
        ("import os\n", "os is not an allowed import"),
        ("import optax\n\n\nclass T(optax.GradientTransformation):\n    pass\n", "derive from"),
    ],
)
def test_imports_and_classes_outside_the_contract_are_refused(source, message):
    violations = check_source(source + "\n\ndef make_optimizer(learning_rate):\n    return 0\n",
                              OPTIMIZER)  # fmt: skip
    assert any(message in str(v) for v in violations), violations


def test_a_source_without_make_optimizer_is_refused():
    violations = check_source("import optax\n\n\ndef optimizer(lr):\n    return optax.sgd(lr)\n",
                              OPTIMIZER)  # fmt: skip
    assert [v.construct for v in violations] == ["function make_optimizer"]


# -- the check --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor"])
def test_each_baseline_passes_the_check(name):
    settings = TASK.check_request(CheckConfig(), None, "adamw")
    report = TASK.check(TASK.baseline_symbol(name), settings, describe)
    assert report["ok"], report
    assert report["state_ratio"] <= 3.0 and report["descent"]["end"] < report["descent"]["start"]
    json.dumps(report)


def test_an_honest_hand_written_optimizer_passes_the_check():
    report = check_optimizer(load(HONEST), CheckConfig(), describe)
    assert report["ok"], report


BROKEN = {
    "finite": candidate("jax.tree.map(lambda g: g * jnp.log(-1.0), updates)"),
    "structure": candidate("jax.tree.map(lambda g: jnp.ravel(g), updates)"),
    "state": candidate(
        "jax.tree.map(lambda g: -0.01 * g, updates)",
        state="[optax.tree.zeros_like(params) for _ in range(4)]",
    ),
    "moves": candidate("jax.tree.map(jnp.zeros_like, updates)"),
    "descent": candidate("jax.tree.map(lambda g: 0.01 * g, updates)"),  # ascends
    "update": candidate("jax.tree.map(lambda g: g @ g, updates)"),
    "build": "def make_optimizer(learning_rate):\n    return learning_rate\n",
    # a Python counter in a closure: the same inputs give different updates on later calls
    "deterministic": (
        "import jax\nimport optax\n\n\ndef make_optimizer(learning_rate):\n"
        "    calls = []\n\n"
        "    def init(params):\n        return optax.EmptyState()\n\n"
        "    def update(updates, state, params=None):\n"
        "        calls.append(1)\n"
        "        scale = -0.01 / len(calls)\n"
        "        return jax.tree.map(lambda g: scale * g, updates), state\n\n"
        "    return optax.GradientTransformation(init, update)\n"
    ),
}


@pytest.mark.parametrize("stage", sorted(BROKEN))
def test_broken_optimizers_fail_at_their_stage(stage):
    report = check_optimizer(load(BROKEN[stage]), CheckConfig(), describe)
    assert not report["ok"] and report["stage"] == stage, report
    assert report["reason"]


def test_a_callback_in_the_update_fails_purity():
    """What the policy cannot see (a library entry point that prints): the check refuses."""

    def factory(learning_rate):
        def update(updates, state, params=None):
            jax.debug.print("step")
            return jax.tree.map(lambda g: -0.01 * g, updates), state

        return optax.GradientTransformation(lambda p: optax.EmptyState(), update)

    report = check_optimizer(factory, CheckConfig(), describe)
    assert report["stage"] == "pure" and "debug_print" in report["reason"], report


def test_check_settings_round_trip_through_json():
    request = TASK.check_request(TASK.check_config(max_state_ratio=2.5), None, "adamw")
    settings = json.loads(json.dumps(request))
    assert TASK.check_config(**settings) == TASK.check_config(max_state_ratio=2.5)


# -- the grammar ------------------------------------------------------------------------------


def covering_designs() -> list[dict]:
    """Every option of every component at least once, on varied backgrounds."""
    rng = random.Random(0)
    designs = []
    for field, options in grammar.OPTIONS.items():
        for value in options:
            base = {f: rng.choice(o) for f, o in grammar.OPTIONS.items()}
            designs.append(grammar.canonical({**base, field: value}))
    return designs


def test_rendered_designs_pass_the_policy_and_read_back():
    for design in covering_designs():
        source = grammar.render(design, docstring="a test")
        assert check_source(source, OPTIMIZER) == [], (design, check_source(source, OPTIMIZER))
        assert TASK.design_of(source) == design


@pytest.mark.slow
def test_every_design_renders_to_source_that_passes_the_policy():
    for design in grammar.every_design():
        assert check_source(grammar.render(design), OPTIMIZER) == [], design


SMALL = CheckConfig(shapes=((6, 4), (2, 3, 5), (5,)), descent_steps=20)


@pytest.mark.parametrize("direction", grammar.DIRECTIONS)
def test_rendered_designs_pass_the_check(direction):
    design = {"direction": direction, "momentum": "nesterov", "clip": "rms", "trust_ratio": True}
    report = check_optimizer(load(grammar.render(design)), SMALL, describe)
    assert report["ok"], (design, report)


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_the_grammar_renders_the_baselines_exactly(name):
    ours = load(grammar.render(grammar.BASELINE_DESIGNS[name]))(optax.constant_schedule(1e-2))
    theirs = TASK.baseline_symbol(name)(optax.constant_schedule(1e-2))
    params = {"w": jnp.ones((4, 3)), "b": jnp.full((3,), 0.5)}
    a, b = ours.init(params), theirs.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1.0) + jnp.arange(p.size).reshape(
            p.shape)), params)  # fmt: skip
        ua, a = ours.update(grads, a, params)
        ub, b = theirs.update(grads, b, params)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8)


def test_baseline_designs_and_sources():
    offered = TASK.baselines()
    assert tuple(offered) == TASK.default_baselines and TASK.default_reference == "adamw"
    for baseline in offered.values():
        assert baseline.design == grammar.canonical(baseline.design) and baseline.description
        assert "def make_optimizer(learning_rate)" in baseline.source


# -- the agents and the cognition -------------------------------------------------------------


def test_the_cognition_file_loads():
    entries = load_jsonl(TASK.cognition_file)
    assert len(entries) >= 15
    assert len({e.title for e in entries}) == len(entries)


def _record(id: int, design: dict, **kw) -> Record:
    return Record(id=id, name=kw.pop("name", f"c{id}"), parent_id=kw.pop("parent_id", None),
                  motivation="", code=grammar.render(design), design=design,
                  status=kw.pop("status", "evaluated"), **kw)  # fmt: skip


def test_the_researcher_proposes_a_novel_design_with_origins():
    researcher, _, _ = TASK.offline_agents()
    entries = {e.title: e for e in load_jsonl(TASK.cognition_file)}
    parent = _record(1, grammar.BASELINE_DESIGNS["adamw"], name="adamw", loss=3.0,
                     benchmark=0.3, fitness=0.5)  # fmt: skip
    known = frozenset(TASK.design_key(d) for d in grammar.BASELINE_DESIGNS.values())
    context = ResearchContext(
        parent=parent, references=[_record(2, grammar.BASELINE_DESIGNS["lion"], name="lion")],
        cognition=[Retrieved(entries["Muon: orthogonalised momentum"], 0.9),
                   Retrieved(entries["LAMB: layer-wise trust ratio"], 0.8)],
        problem_summary="slow convergence", lessons=[],
        component_effects={("clip", "rms"): (0.05, 3)}, known_designs=known, seed=3,
    )  # fmt: skip
    origins = set()
    for seed in range(6):
        proposal = researcher.propose(dataclasses.replace(context, seed=seed))
        assert TASK.design_key(proposal.design) not in known
        assert check_source(proposal.code, OPTIMIZER) == []
        assert TASK.design_of(proposal.code) == proposal.design
        assert proposal.idea_origins and "offline" in proposal.motivation
        origins |= {o["origin"] for o in proposal.idea_origins}
    assert "cognition" in origins, origins


def test_the_researcher_proposals_are_pinned():
    """The same context and seed give the same proposal as before the search moved into
    agents.grammar_search."""
    researcher, _, _ = TASK.offline_agents()
    parent = _record(1, grammar.BASELINE_DESIGNS["adamw"], name="adamw", loss=3.0,
                     benchmark=0.3, fitness=0.5)  # fmt: skip
    entries = [CognitionEntry("Muon", "", "orthogonalised momentum by Newton-Schulz", "", "", "",
                              ""), CognitionEntry("LAMB", "", "a layer-wise trust ratio", "", "",
                                                  "", "")]  # fmt: skip
    context = ResearchContext(
        parent=parent, references=[_record(2, grammar.BASELINE_DESIGNS["lion"], name="lion")],
        cognition=[Retrieved(entries[0], 0.9), Retrieved(entries[1], 0.8)],
        problem_summary="slow convergence", lessons=[],
        component_effects={("clip", "rms"): (0.05, 3)},
        known_designs=frozenset(TASK.design_key(d) for d in grammar.BASELINE_DESIGNS.values()),
        seed=0,
    )  # fmt: skip
    proposals = [researcher.propose(dataclasses.replace(context, seed=s)) for s in range(8)]
    assert [p.name for p in proposals] == [
        "factored-a62e0c", "orthogonal-f4b35c", "adam_trustratio-true-b85327",
        "sign_lrscale-0.3-f62d62", "adam_lrscale-3.0-90a7f5", "adam_beta2-0.999-abbdc5",
        "orthogonal-f4b35c", "adam_trustratio-true-b85327",
    ]  # fmt: skip
    assert [o["evidence"] for p in proposals[:4] for o in p.idea_origins] == [
        "exploratory draw", "'Muon' (similarity 0.90)", "'LAMB' (similarity 0.80)",
        "inherited from lion, an evaluated design", "inherited from lion, an evaluated design",
    ]  # fmt: skip
    assert proposals[3].motivation == (
        "Builds on adamw (fitness 0.500, loss 3.0000, accuracy 0.300).\n"
        "Its analysis: slow convergence\n"
        "Change direction: adam -> sign: the sign gives every coordinate the same step size, "
        "with one state tensor (Lion).\n"
        "Change lr_scale: 1.0 -> 0.3: a 0.3x learning rate, for updates of larger RMS.\n"
        "Idea direction=sign from analysis: inherited from lion, an evaluated design.\n"
        "Idea lr_scale=0.3 from analysis: inherited from lion, an evaluated design.\n"
        "(Proposed by the offline optimizer grammar researcher, not a language model.)"
    )
    assert proposals[3].design == grammar.canonical({"direction": "sign", "lr_scale": 0.3})


def test_the_researcher_revises_a_diverging_design():
    researcher, _, _ = TASK.offline_agents()
    source = grammar.render({"direction": "sgd", "lr_scale": 3.0})
    revised = researcher.revise(source, "finite: step 1: the update of ['p0'] is not finite")
    design = TASK.design_of(revised)
    assert design["clip"] == "rms" and design["lr_scale"] == 1.0
    assert researcher.revise(source, "something unrelated") is None


def test_the_analyser_and_judge():
    _, analyser, judge = TASK.offline_agents()
    parent = _record(1, grammar.BASELINE_DESIGNS["adamw"], loss=3.0, benchmark=0.3, fitness=0.5)
    child_design = grammar.canonical({"direction": "sign", "lr_scale": 0.3})
    child = _record(2, child_design, parent_id=1, loss=3.2, benchmark=0.28, fitness=0.4,
                    metrics={"final_train": {"loss": 2.5, "grad_norm": 0.5}})  # fmt: skip
    analysis = analyser.analyse(child, parent, [])
    assert "slow convergence" in analysis.problem_summary and "hurt" in analysis.lesson
    failed = _record(3, child_design, parent_id=1, status="failed", failure_stage="finite",
                     failure_reason="step 1: not finite")  # fmt: skip
    assert "diverges" in analyser.analyse(failed, parent, [child]).problem_summary
    score, rationale = judge.judge(child, nearest_similarity=0.5, population=[parent, child])
    assert 1.0 <= score <= 10.0 and "2 component" in rationale
    effects = component_effects([parent, child, failed], TASK.design_changes)
    assert effects[("direction", "sign")] == (pytest.approx((-0.1 - 1.0) / 2), 2)


# -- evaluation and the trainer hook ----------------------------------------------------------


def tiny_train(steps: int = 4) -> dict:
    return {
        "seed": 0, "mixer": "linear_attention",
        "model": {"vocab_size": 256, "d_model": 32, "num_layers": 1, "num_heads": 2},
        "data": {"kind": "bytes", "batch_size": 8, "seq_len": 32, "eval_examples": 16},
        "optim": {"learning_rate": 1e-2, "warmup_steps": 2},
        "train": {"steps": steps, "log_every": 2, "checkpoint_every": 0},
    }  # fmt: skip


def test_evaluate_trains_with_the_candidate_and_figures_read_it(tmp_path):
    # a factored second moment: optimizer state shaped unlike the parameters, which the
    # trainer shards by shape (replicated here) instead of by optax.tree_map_params
    design = {"direction": "factored", "momentum": "nesterov", "trust_ratio": True}
    result = TASK.evaluate(load(grammar.render(design)), tiny_train(), tmp_path, label="cand",
                           isolation={}, log=lambda _: None)  # fmt: skip
    assert result["status"] == "completed" and result["optimizer"] == "cand"
    figures = TASK.figures(result)
    assert math.isfinite(figures.loss) and 0.0 <= figures.benchmark <= 1.0
    assert figures.loss < math.log(256) and "train_loss" in figures.details
    assert json.loads((tmp_path / "run.json").read_text())["optimizer"] == "cand"
    assert TASK.figures(None) == TASK.figures({"status": "stopped"})
    assert TASK.figures({}).loss is None


def test_the_optimizer_hook_and_the_default_path():
    params = {"w": jnp.ones((4, 3)), "b": jnp.full((3,), 0.5)}
    grads = jax.tree.map(lambda p: 3.0 * jnp.cos(p + jnp.arange(p.size).reshape(p.shape)), params)
    config = OptimConfig()
    seen = []

    def factory(schedule):
        seen.append(schedule)
        return optax.lion(schedule)

    def updates(tx):
        return tx.update(grads, tx.init(params), params)[0]

    # Default: AdamW with a decay mask behind clipping, as before the hook.
    default, schedule = make_optimizer(config, 50, params)
    expected = optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay,
                    mask=jax.tree.map(lambda x: x.ndim >= 2, params)),
    )  # fmt: skip
    for x, y in zip(jax.tree.leaves(updates(default)), jax.tree.leaves(updates(expected)),
                    strict=True):  # fmt: skip
        assert np.array_equal(x, y)
    # A candidate: its factory gets the schedule; clipping stays in front of it.
    tx, schedule = make_optimizer(config, 50, params, optimizer=factory)
    assert seen == [schedule]
    reference = optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.lion(schedule))
    for x, y in zip(jax.tree.leaves(updates(tx)), jax.tree.leaves(updates(reference)),
                    strict=True):  # fmt: skip
        assert np.array_equal(x, y)
