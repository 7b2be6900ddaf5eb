"""How the controller runs a stage, with the sandbox replaced by a stub (no JAX, no training):
the reference baseline runs first and alone and sets the stage's limits; a reference that
runs out of time is retried once at doubled limits; one that fails stops the run, says so in
the leaderboard and runs again on resume; a fatal error cancels the evaluations in flight."""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from pathlib import Path

import pytest

from asi_jax.candidates import engineer, isolation
from asi_jax.candidates.sandbox import Cancelled, SandboxResult
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller, EvolutionError

FLOORS = {"wall_seconds": 1.0, "cpu_seconds": 5, "reference_multiple": 4.0}
REFERENCE_CPU = 10.0  # what the stubbed reference reports; its limits: 4x that, 40 s


class StubWorker:
    """Stands in for `sandbox.run_worker`; records every call. `behaviour(name, stage, call)`
    returns "ok", "timeout" or "block" (wait for the cancel event)."""

    def __init__(self, behaviour=lambda name, stage, call: "ok"):
        self.behaviour, self.calls, self.lock = behaviour, [], threading.Lock()
        self.saw_cancel = threading.Event()

    def __call__(self, request, folder, limits, *, read_only_paths=(), visible_devices=None,
                 cancel=None):  # fmt: skip
        folder = Path(folder)
        stage = folder.parent.name
        name = request["baseline"] or folder.parents[1].name.split("-", 1)[1]
        call = {"name": name, "stage": stage, "limits": limits, "start": time.monotonic()}
        with self.lock:
            self.calls.append(call)
            number = sum(c["name"] == name and c["stage"] == stage for c in self.calls)
        action = self.behaviour(name, stage, number)
        if action == "block":
            while not cancel.is_set():
                time.sleep(0.05)
            self.saw_cancel.set()
            raise Cancelled("cancelled")
        time.sleep(0.3 if request["baseline"] else 0.05)
        call["end"] = time.monotonic()
        if action == "timeout":
            return SandboxResult(False, None, f"timed out after {limits.wall_seconds:g} s",
                                 limits.wall_seconds, "", limit="wall")  # fmt: skip
        x = zlib.crc32(name.encode()) % 1000 / 1000
        train = {"eval": {"heldout": {"loss": 1.0 + x, "accuracy": 0.5},
                          "mqar_kv2": {"loss": 1.0, "accuracy": x}},
                 "params": {"total": 1000}, "status": "completed"}  # fmt: skip
        response = {"ok": True, "stage": None, "reason": None, "check": {}, "train": train}
        cpu = REFERENCE_CPU if name == "deltanet" else 1.0
        return SandboxResult(True, response, None, 0.3, "", cpu_seconds=cpu)


def _config(**overrides):
    values = {"baselines": ["linear_attention", "deltanet"], "workers": 2,
              "budget": {"candidates": 3}, "verify": {"promote": 1}, "limits": FLOORS}  # fmt: skip
    return from_config_dict({**values, **overrides})


def _run(tmp_path, stub, monkeypatch, config=None, log=None):
    monkeypatch.setattr(engineer, "run_worker", stub)
    with Controller(config or _config(), tmp_path, log=log or (lambda line: None)) as c:
        return c.run()


def test_the_reference_runs_first_and_alone_and_sets_each_stages_limits(tmp_path, monkeypatch):
    stub, lines = StubWorker(), []
    board = _run(tmp_path, stub, monkeypatch, log=lines.append)
    for stage in ("explore", "verify"):
        calls = [c for c in stub.calls if c["stage"] == stage]
        reference, others = calls[0], calls[1:]
        assert reference["name"] == "deltanet" and others
        assert all(c["start"] >= reference["end"] for c in others)  # alone, and first
        assert reference["limits"].wall_seconds == 1.0 and reference["limits"].cpu_seconds == 5
        measured = board["limits"][stage]["reference"]
        for c in others:  # 4x what the reference took, above the floors
            assert c["limits"].cpu_seconds == 4 * REFERENCE_CPU
            # It ran alone; the others share the machine with each other: times the workers.
            workers = board["config"]["workers"]
            assert c["limits"].wall_seconds == pytest.approx(4 * measured["wall_seconds"] * workers)
        assert measured["wall_seconds"] >= 0.3
    assert board["run"]["state"] == "finished" and board["explore"]["evaluated"] == 5
    # progress: stage, finished/total, the baselines named as such, failures, time left
    assert any(line.startswith("[explore 1/5] baseline deltanet (reference): fitness")
               for line in lines), lines  # fmt: skip
    assert any(re.match(r"\[explore [2-5]/5\] baseline linear_attention: fitness", line)
               for line in lines)  # fmt: skip
    progress = [line for line in lines if line.startswith("[explore 5/5]")]
    assert progress and "failed 0" in progress[0] and "elapsed" in progress[0]
    assert "left in explore" in progress[0]
    # verification counts every seed: 3 evaluations (a candidate, 2 baselines) x 3 seeds
    assert any(line.startswith("[verify 9/9]") and "(seed " in line for line in lines)


def test_a_reference_out_of_time_is_retried_once_at_doubled_limits(tmp_path, monkeypatch):
    first_times_out = lambda name, stage, call: "timeout" if call == 1 else "ok"
    stub = StubWorker(first_times_out)
    board = _run(tmp_path, stub, monkeypatch, config=_config(verify={"promote": 0}))
    reference = [c for c in stub.calls if c["name"] == "deltanet"]
    assert [c["limits"].wall_seconds for c in reference] == [1.0, 2.0]
    assert [c["limits"].cpu_seconds for c in reference] == [5, 10]
    assert board["run"]["state"] == "finished"
    # candidates are not retried for time: they run at limits already scaled to this machine
    others = [c for c in stub.calls if c["name"] != "deltanet"]
    assert len(others) == len({c["name"] for c in others}) == 4


def test_a_failed_reference_stops_the_run_and_runs_again_on_resume(tmp_path, monkeypatch):
    always = StubWorker(lambda name, stage, call: "timeout" if name == "deltanet" else "ok")
    with pytest.raises(EvolutionError, match="the reference baseline deltanet failed in explore"):
        _run(tmp_path, always, monkeypatch)
    assert [c["name"] for c in always.calls] == ["deltanet", "deltanet"]  # nothing else ran
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["run"]["state"] == "failed" and "deltanet" in board["run"]["reason"]
    assert board["explore"]["failed"] == 1  # the leaderboard shows the failure

    # Resumed with more time (a change of limits is allowed and recorded): it runs again.
    raised = _config(limits={**FLOORS, "wall_seconds": 10.0})
    board = _run(tmp_path, StubWorker(), monkeypatch, config=raised)
    assert board["run"]["state"] == "finished"
    assert [c.get("limits") and sorted(c) for c in board["config_changes"]] == [["at", "limits"]]
    reference = next(r for r in board["explore"]["ranking"] if r["name"] == "deltanet")
    assert reference["status"] == "evaluated" and reference["fitness"] is not None


def test_a_fatal_error_cancels_the_evaluations_in_flight(tmp_path, monkeypatch):
    stub = StubWorker(lambda name, stage, call: "ok" if name == "deltanet" else "block")
    monkeypatch.setattr(engineer, "run_worker", stub)
    config = _config(baselines=["deltanet"])
    with Controller(config, tmp_path, log=lambda line: None) as controller:
        begin, begun = controller._begin_proposal, []

        def begin_then_fail():  # the proposal after the first one breaks
            if begun:
                raise RuntimeError("the researcher broke")
            attempt = begin()
            if attempt is not None:
                begun.append(attempt)
            return attempt

        controller._begin_proposal = begin_then_fail
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="the researcher broke"):
            controller.run()
        assert time.monotonic() - started < 30  # cancelled, not waited for
        assert stub.saw_cancel.is_set()
        (proposed,) = [c for c in controller.db.candidates() if c["kind"] == "candidate"]
        status = controller.db.query("SELECT status FROM evaluations WHERE candidate_id = ?",
                                     proposed["id"])  # fmt: skip
        assert status == [{"status": "pending"}]  # a resumed run redoes it
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["run"] == {"state": "failed", "reason": "the researcher broke",
                            "at": board["run"]["at"]}  # fmt: skip


def test_model_written_code_needs_the_os_layers_or_an_explicit_opt_in(tmp_path, monkeypatch):
    missing = isolation.Isolation(None, None, 0, "test", ("no working bubblewrap: install it",))
    monkeypatch.setattr(isolation, "detect", lambda: missing)
    llm = {"agents": "llm", "llm": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                                    "api_key_env": "NO_SUCH_KEY_VARIABLE"}}  # fmt: skip
    with pytest.raises(
        EvolutionError,
        match=r"lacks the sandbox's OS layers.*no working "
        r"bubblewrap: install it.*allow_llm_code_without_os_sandbox=True",
    ):
        Controller(_config(**llm), tmp_path / "refused")
    assert not (tmp_path / "refused" / "evolution.sqlite").exists()  # refused before anything
    lines = []
    with Controller(_config(), tmp_path / "offline", log=lines.append) as controller:
        recorded = controller.db.get_meta("environments")[-1]["isolation"]
    assert recorded["complete"] is False and recorded["problems"] == list(missing.problems)
    assert any("INCOMPLETE" in line for line in lines)
    assert any("running without the OS layers" in line for line in lines)
