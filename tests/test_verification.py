"""Verification over seeds: bootstrap intervals, "beats the reference" only when the paired
gain's interval lies above zero, ablations of every verified winner, and resume with more
seeds. The controller runs with the sandbox replaced by a stub whose figures depend on the
candidate and the seed (no JAX, no training)."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from asi_jax.candidates import engineer
from asi_jax.candidates.engineer import code_hash
from asi_jax.candidates.sandbox import SandboxResult
from asi_jax.evolution import analyses
from asi_jax.evolution.config import VerifyConfig, from_config_dict, split_stage
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.evolution.db import Database
from asi_jax.evolution.verification import Summariser, bootstrap
from asi_jax.report import page
from asi_jax.tasks import get_task

FLOORS = {"wall_seconds": 5.0, "cpu_seconds": 5, "reference_multiple": 4.0}


# -- the interval ------------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.3, -0.1, 0.2, 0.5, 0.0, 0.25]
    a, b = bootstrap(values), bootstrap(values)
    assert a == b and a.n == 6 and a.mean == pytest.approx(np.mean(values))
    assert a.low < a.mean < a.high and min(values) <= a.low and a.high <= max(values)


def test_bootstrap_matches_the_normal_interval_for_many_values():
    x = np.random.default_rng(1).normal(0.2, 1.0, size=400)
    interval = bootstrap(x.tolist())
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert interval.low == pytest.approx(x.mean() - half, abs=0.02)
    assert interval.high == pytest.approx(x.mean() + half, abs=0.02)


def test_three_seeds_beat_only_when_every_seed_gains():
    # With three values the 95% interval's lower end is the smallest: one losing seed sinks it.
    assert bootstrap([0.1, 0.2, 0.3]).low == pytest.approx(0.1)
    assert bootstrap([0.1, 0.2, 0.3]).above_zero()
    assert not bootstrap([0.5, 0.4, -0.01]).above_zero()
    single = bootstrap([0.7])
    assert single.low is None and not single.above_zero()  # one seed: no interval, no win
    with pytest.raises(ValueError, match="finite"):
        bootstrap([0.1, float("nan")])


def _row(name, kind, quantitative, loss, stage):
    return {"name": name, "kind": kind, "status": "evaluated", "fitness": quantitative + 0.5,
            "terms": {"quantitative": quantitative}, "loss": loss, "benchmark": 0.5,
            "failure_stage": None, "failure_reason": None, "compute_seconds": 1.0,
            "folder": f"candidates/{name}/{stage}", "params": 10,
            "recall": {"4": 1.0 - loss / 10, "8": None}}  # fmt: skip


def test_the_summary_pairs_seeds_and_decides_by_the_interval():
    stages = ["verify", "verify-2", "verify-3"]
    gains = {"steady": [0.3, 0.2, 0.25], "lucky": [1.2, 0.3, -0.05]}  # lucky's mean is higher
    by_stage = {s: [_row("ref", "baseline", 1.0 + k / 10, 1.0, s)] for k, s in enumerate(stages)}
    for name, g in gains.items():
        for k, s in enumerate(stages):
            by_stage[s].append(_row(name, "candidate", 1.0 + k / 10 + g[k], 1.0 - g[k], s))
    summariser = Summariser(VerifyConfig(), "ref")
    rows = {r["name"]: r for r in summariser.rows(by_stage)}
    steady = rows["steady"]
    assert steady["seeds"] == 3 and [r["stage"] for r in steady["replicates"]] == stages
    assert steady["gain"]["quantitative"]["mean"] == pytest.approx(0.25)
    assert steady["gain"]["quantitative"]["low"] == pytest.approx(0.2)
    assert steady["gain"]["loss_relative"]["mean"] == pytest.approx(0.25)
    assert steady["intervals"]["loss"]["n"] == 3 and steady["loss"] == pytest.approx(0.75)
    # a task's nested figures (recall by number of pairs) get intervals and means too
    assert steady["intervals"]["recall 4"]["mean"] == pytest.approx(0.925)
    assert steady["recall"] == {"4": pytest.approx(0.925)} and "recall 8" not in steady["intervals"]
    assert summariser.beating(list(rows.values())) == ["steady"]  # not lucky, not the baseline
    # one failed seed: the candidate's verification failed, and says which seed
    by_stage["verify-2"][1] = {**by_stage["verify-2"][1], "status": "failed",
                               "failure_stage": "train", "failure_reason": "nan loss"}  # fmt: skip
    failed = {r["name"]: r for r in summariser.rows(by_stage)}["steady"]
    assert failed["status"] == "failed" and failed["failure_reason"] == "seed 2: nan loss"
    assert failed["gain"]["quantitative"]["n"] == 2


def test_verify_stages_train_their_own_seeds():
    experiment = {"seed": 7, "data": {"seed": 7}}
    config = from_config_dict({"verify": {"seeds": 3, "experiment": experiment}})
    assert config.stages_of("verify") == ("verify", "verify-2", "verify-3")
    assert config.stages_of("explore") == ("explore",)
    seeds = [(config.experiment_of(s).seed, config.experiment_of(s).data.seed)
             for s in config.stages_of("verify")]  # fmt: skip
    assert seeds == [(7, 7), (8, 8), (9, 9)]
    assert split_stage("verify-3") == ("verify", 3) and split_stage("explore") == ("explore", 1)
    with pytest.raises(ValueError, match=r"verify\.seeds"):
        from_config_dict({"verify": {"seeds": 0}})


# -- the controller --------------------------------------------------------------------------
class SeedStub:
    """Stands in for `sandbox.run_worker`. Candidates train to a lower loss than the
    baselines on every seed; ablation variants lose part of that gain; each seed shifts
    every loss by the same amount (a harder or easier data order), so gains are paired."""

    def __init__(self):
        self.calls, self.lock = [], threading.Lock()

    def __call__(self, request, folder, limits, *, read_only_paths=(), visible_devices=None,
                 cancel=None):  # fmt: skip
        folder = Path(folder)
        stage, name = folder.parent.name, folder.parents[1].name.split("-", 1)[1]
        name = request["baseline"] or name
        seed = request["train"]["seed"]
        with self.lock:
            self.calls.append((name, stage, seed))
        shift = 0.1 * seed
        jitter = zlib.crc32(f"{name}{seed}".encode()) % 100 / 10_000
        if request["baseline"]:
            loss = 1.0 + shift + (0.0 if name == "deltanet" else 0.3)
        elif name.startswith("ablate-"):
            loss = 0.8 + shift + jitter
        elif name.startswith("best-"):
            loss = 0.3 + shift + jitter
        else:
            loss = 0.5 + shift + jitter
        train = {"eval": {"heldout": {"loss": loss, "accuracy": 0.5},
                          "mqar_kv2": {"loss": 1.0, "accuracy": 1.2 - loss}},
                 "params": {"total": 1000}, "status": "completed"}  # fmt: skip
        response = {"ok": True, "stage": None, "reason": None, "check": {}, "train": train}
        return SandboxResult(True, response, None, 0.05, "", cpu_seconds=0.05)


def _config(**verify):
    """Verification with seeds 1, 2 and 3 (`verify` overrides its other fields)."""
    verify = {"promote": 1, "seeds": 3, "experiment": {"seed": 1, "data": {"seed": 1}}, **verify}
    return from_config_dict({"baselines": ["linear_attention", "deltanet"], "workers": 2,
                             "budget": {"candidates": 3}, "limits": FLOORS, "verify": verify,
                             "fitness": {"scale": 1.0}})  # fmt: skip


def _run(tmp_path, stub, monkeypatch, config):
    monkeypatch.setattr(engineer, "run_worker", stub)
    with Controller(config, tmp_path, log=lambda line: None) as c:
        return c.run()


def test_verification_runs_every_seed_and_ablates_the_winner(tmp_path, monkeypatch):
    stub = SeedStub()
    _run(tmp_path, stub, monkeypatch, _config(promote=0))  # exploration only
    # A candidate three components away from DeltaNet joins, fittest (the stub's "best-"),
    # and the run resumes with verification: three variants, one per component.
    task = get_task("linear_attention")
    db = Database(tmp_path / DATABASE)
    with db.transaction():
        parent = db.candidate_by_name("deltanet")
        design = {**parent["design"], "conv": "k", "output_gate": "sigmoid", "head_mix": True}
        code = task.grammar().render(design, docstring="Three changes.")
        cid = db.add_candidate(name="best-three-changes", generation=1, kind="candidate",
                               researcher="test", motivation="three changes", code=code,
                               code_hash=code_hash(code), design=design,
                               parent_id=parent["id"])  # fmt: skip
        db.start_evaluation(cid, "explore")
    db.close()
    config = _config()
    board = _run(tmp_path, stub, monkeypatch, config)
    verify = board["verify"]
    assert verify["seeds"] == 3 and verify["confidence"] == 0.95
    assert verify["beats_deltanet"] == ["best-three-changes"]
    ranking = {r["name"]: r for r in verify["ranking"]}
    assert set(ranking) == {"best-three-changes", "deltanet", "linear_attention"}
    for name, row in ranking.items():  # three seeds each, the stub saw seeds 1, 2 and 3
        assert row["seeds"] == 3 and row["status"] == "evaluated"
        seeds = sorted(s for n, st, s in stub.calls if n == name and st.startswith("verify"))
        assert seeds == [1, 2, 3]
        assert all((tmp_path / r["folder"]).is_dir() for r in row["replicates"])
    winner, reference = ranking["best-three-changes"], ranking["deltanet"]
    assert winner["gain"]["quantitative"]["low"] > 0 and winner["loss"] < reference["loss"]
    assert reference["gain"]["quantitative"]["mean"] == pytest.approx(0.0)
    loss = winner["intervals"]["loss"]
    assert loss["low"] <= winner["loss"] == loss["mean"] <= loss["high"]
    # the winner's ablations: one variant per component, each trained on every seed
    db = Database(tmp_path / DATABASE)
    variants = [c for c in db.candidates() if c["kind"] == "ablation"]
    assert len(variants) == 3
    for v in variants:
        assert v["parent_id"] == cid
        assert {db.status(v["id"], s) for s in config.stages_of("verify")} == {"evaluated"}
        assert len(task.design_changes(design, v["design"])) == 1
    (table,) = verify["ablations"]
    assert table["winner"] == "best-three-changes"
    assert {row["change"] for row in table["variants"]} == {
        "conv: k -> qkv",
        "output_gate: sigmoid -> none",
        "head_mix: True -> False",
    }
    for row in table["variants"]:  # each variant loses part of the gain, on every seed
        assert row["status"] == "evaluated" and row["significant"] and row["drop"]["low"] > 0
        assert row["gain"]["mean"] > 0
    assert table["carried_by"] in {row["change"] for row in table["variants"]}
    # the analyses and the report read the same rule; the report shows intervals, the
    # ablation table and each seed's run on the candidate's page
    assert analyses.winners(db, "verify") == ["best-three-changes"]
    html = page.render(db, tmp_path)
    assert html.split("Written")[0] == (tmp_path / "report.html").read_text().split("Written")[0]
    assert "Ablations of the verified winners" in html and "head_mix: True -&gt; False" in html
    assert html.count("<small>[") >= 3 * 4 and "<h4>verify-3: evaluated</h4>" in html
    # counted once each: one evaluation row per candidate and seed stage
    counts = db.query("SELECT candidate_id, stage, COUNT(*) AS n FROM evaluations "
                      "GROUP BY candidate_id, stage HAVING n > 1")  # fmt: skip
    assert counts == []
    db.close()
    assert json.loads((tmp_path / "leaderboard.json").read_text())["verify"]["seeds"] == 3


def test_a_one_component_winner_is_ablated_by_the_reference_itself(tmp_path, monkeypatch):
    stub = SeedStub()
    board = _run(tmp_path, stub, monkeypatch, _config())
    (promoted,) = board["verify"]["beats_deltanet"]
    (table,) = board["verify"]["ablations"]
    assert table["winner"] == promoted
    (variant,) = table["variants"]  # the one change, undone, is DeltaNet: its runs serve
    assert variant["variant"] == "deltanet" and table["carried_by"] == variant["change"]
    assert variant["drop"]["mean"] == pytest.approx(table["gain"]["mean"])
    assert not [c for c in stub.calls if c[0].startswith("ablate-")]  # nothing retrained


def test_a_resumed_run_with_more_seeds_verifies_the_new_seeds_only(tmp_path, monkeypatch):
    stub = SeedStub()
    _run(tmp_path, stub, monkeypatch, _config(seeds=2, ablate=False))
    before = list(stub.calls)
    board = _run(tmp_path, stub, monkeypatch,
                 _config(ablate=False))  # fmt: skip
    new = stub.calls[len(before) :]
    assert new and {stage for _, stage, _ in new} == {"verify-3"}
    assert {seed for *_, seed in new} == {3}
    assert all(r["seeds"] == 3 for r in board["verify"]["ranking"])


def test_one_seed_verifies_without_an_interval_and_so_without_a_win(tmp_path, monkeypatch):
    board = _run(tmp_path, SeedStub(), monkeypatch, _config(seeds=1))
    assert board["verify"]["beats_deltanet"] == [] and board["verify"]["ablations"] == []
    assert all(r["gain"]["quantitative"]["low"] is None for r in board["verify"]["ranking"])
    assert board["explore"]["beats_deltanet"]  # exploration's single-seed rule is unchanged


def test_a_free_form_winner_is_ablated_by_the_researchers_variants(tmp_path, monkeypatch):
    """A winner with no design in the grammar (a model's free-form file): the researcher
    writes single-change variants, which train on every seed like any other."""
    stub = SeedStub()
    _run(tmp_path, stub, monkeypatch, _config(promote=0))
    task = get_task("linear_attention")
    db = Database(tmp_path / DATABASE)
    with db.transaction():
        parent = db.candidate_by_name("deltanet")
        code = task.grammar().render({**parent["design"], "conv": "k"}, docstring="Free form.")
        cid = db.add_candidate(name="best-free-form", generation=1, kind="candidate",
                               researcher="llm", motivation="free form", code=code,
                               code_hash=code_hash(code), parent_id=parent["id"])  # fmt: skip
        db.start_evaluation(cid, "explore")
    db.close()
    asked = []

    def ablations(winner, reference, count):
        asked.append((winner.name, reference.name, count))
        return [
            ("no conv on k", code.replace('"k"', '"none"')),
            ("same again", code),
            ("no conv on k", code),
        ]  # a repeated change is asked once

    monkeypatch.setattr(engineer, "run_worker", stub)
    with Controller(_config(seeds=2), tmp_path, log=lambda line: None) as c:
        c.agents(0).researcher.agent.ablations = ablations
        board = c.run()
    assert asked == [("best-free-form", "deltanet", 4)]
    (table,) = board["verify"]["ablations"]
    assert [v["change"] for v in table["variants"]] == ["no conv on k", "same again"]
    assert all(v["status"] == "evaluated" and v["gain"]["n"] == 2 for v in table["variants"])


def test_the_llm_researcher_writes_single_change_variants(monkeypatch):
    from fake_servers import serve

    from asi_jax.agents.base import Record
    from asi_jax.agents.llm import LLMConfig, LLMResearcher, make_client

    monkeypatch.setenv("TEST_ABLATION_KEY", "sk-test-ablation")
    reply = {
        "variants": [
            {"change": "drop the output gate", "code": "class Mixer: pass\n"},
            {"change": "no short conv", "code": "class Mixer: x = 1\n"},
        ]
    }

    def respond(path, body):
        return 200, {"choices": [{"message": {"role": "assistant", "content": json.dumps(reply)},
                                  "finish_reason": "stop"}]}  # fmt: skip

    record = Record(id=3, name="w", parent_id=None, motivation="m",
                    code="class Mixer: y = 2\n", design=None, status="evaluated", loss=1.0,
                    benchmark=0.5, fitness=2.0)  # fmt: skip
    with serve(respond) as server:
        llm = LLMConfig(provider="openai", model="m", base_url=server.url,
                        api_key_env="TEST_ABLATION_KEY", reply_retries=0)  # fmt: skip
        researcher = LLMResearcher(make_client(llm), get_task("linear_attention"))
        variants = researcher.ablations(record, record, 1)
    assert variants == [("drop the output gate", "class Mixer: pass\n")]  # at most `count`
    prompt = server.requests[0][1]["messages"][1]["content"]
    assert "Verified winner" in prompt and "exactly one component" in prompt
    assert "class Mixer: y = 2" in prompt
