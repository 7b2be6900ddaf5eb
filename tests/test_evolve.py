"""The evolution loop end to end through scripts/evolve.py: proposals, sandboxed evaluation,
scoring, verification, the leaderboard, and resuming after `kill -9`."""

import contextlib
import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller, EvolutionError

ROOT = Path(__file__).resolve().parents[1]

_TINY = """
from asi_jax.evolution.config import EvolutionConfig
from asi_jax.train.config import complete


def get_config():
    e = dict(seed=0, model=dict(vocab_size=32, d_model=32, num_layers=1, num_heads=2),
             data=dict(kind="mqar", batch_size=8, seq_len=16, seed=0, eval_examples=32,
                       mqar=dict(vocab_size=32, seq_len=16, num_kv_pairs=2),
                       eval_kv_pairs=(2, 4)),
             optim=dict(learning_rate=1e-2, warmup_steps=2),
             train=dict(steps=STEPS, log_every=20, checkpoint_every=0))
    return complete(EvolutionConfig, dict(
        explore=e,
        # verification keeps its final checkpoints: orbax saving must work in the sandbox
        verify=dict(promote=1, seeds=2, ablate=False,
                    experiment={**e, "train": {**e["train"], "checkpoint_every": STEPS}}),
        baselines=("deltanet",),
        workers=1,
        budget=dict(candidates=2),
        check=dict(batch_sizes=(2,), seq_lens=(1, 9), cost_seq_len=64, causal_seq_len=16),
    ))
"""


def _config(tmp_path: Path, steps: int) -> Path:
    path = tmp_path / "tiny_evolve.py"
    path.write_text(_TINY.replace("STEPS", str(steps)))
    return path


def _evolve(config: Path, workdir: str, cwd: Path, *overrides: str) -> subprocess.Popen:
    """The README's run command, with a workdir relative to `cwd`."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "evolve.py"),
            f"--config={config}",
            f"--workdir={workdir}",
            *overrides,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def _rows(workdir: Path, sql: str) -> list[tuple]:
    if not (workdir / "evolution.sqlite").exists():
        return []
    connection = sqlite3.connect(workdir / "evolution.sqlite")
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        connection.close()


def _processes_inside(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(Path(proc / "cwd").resolve()).startswith(str(folder)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _candidate_training(process: subprocess.Popen, workdir: Path,
                        stale: Path | None = None) -> tuple[str, Path]:  # fmt: skip
    """Waits, however long the machine takes, until a candidate's training has started in
    the database's pending evaluations (`stale`: a run.json left by an earlier start, not
    counted); fails if the run ends first. Returns its name and training folder."""
    stale_stamp = stale.stat().st_mtime_ns if stale else None
    while True:
        time.sleep(0.2)
        assert process.poll() is None, process.stdout.read()
        pending = _rows(workdir, "SELECT c.id, c.name FROM evaluations e JOIN candidates c ON "
                        "c.id = e.candidate_id WHERE e.status = 'pending' AND "
                        "c.kind = 'candidate'")  # fmt: skip
        for cid, name in pending:
            train = workdir / "candidates" / f"{cid:04d}-{name}" / "explore" / "attempt1" / "train"
            with contextlib.suppress(FileNotFoundError):
                if (train / "run.json").stat().st_mtime_ns != stale_stamp:
                    return name, train


def _finished(workdir: Path) -> dict[int, float]:
    return dict(_rows(workdir, "SELECT candidate_id, finished_at FROM evaluations "
                      "WHERE status != 'pending'"))  # fmt: skip


@pytest.mark.slow
def test_readme_run_command_one_run_per_workdir_kill_9_sigterm_and_resume(tmp_path):
    """The README's command shape with a relative workdir: a second start on the same
    workdir is refused and changes nothing; kill -9, then the same command resumes; SIGTERM
    stops it within seconds; the same command again finishes, nothing lost or repeated."""
    config, relative = _config(tmp_path, steps=400), "runs/tiny"
    workdir = tmp_path / relative
    process = _evolve(config, relative, tmp_path)
    interrupted, train = _candidate_training(process, workdir)

    second = _evolve(config, relative, tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 2, output
    assert output.strip().splitlines() == [
        f"evolve.py: error: workdir 'runs/tiny' is in use by another evolution run (pid "
        f"{process.pid} on {socket.gethostname()}, started " + output.split("started ")[1].strip()
    ]
    assert process.poll() is None and (train / "run.json").exists()  # the first one untouched
    assert len(json.loads(_rows(workdir, "SELECT value FROM meta WHERE key = 'environments'")
                          [0][0])) == 1  # fmt: skip

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = _finished(workdir)
    assert finished_before  # the baseline at least
    time.sleep(2)  # the orphaned sandbox notices its parent is gone and exits
    assert _processes_inside(workdir) == []

    resumed = _evolve(config, relative, tmp_path)
    _candidate_training(resumed, workdir, stale=train / "run.json")
    resumed.send_signal(signal.SIGTERM)  # a scheduler's stop: cancel, record, exit
    output, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 130, output
    assert f"evaluation(s) to run: {interrupted}" in output
    assert "interrupted; run the same command again to resume runs/tiny" in output
    assert _processes_inside(workdir) == []
    board = json.loads((workdir / "leaderboard.json").read_text())
    assert board["run"]["state"] == "interrupted"

    final = _evolve(config, relative, tmp_path)
    output, _ = final.communicate(timeout=1800)
    assert final.returncode == 0, output
    names = [n for (n,) in _rows(workdir, "SELECT name FROM candidates")]
    assert len(names) == len(set(names)) == 3  # deltanet + 2 candidates, each once
    after = dict(
        _rows(workdir, "SELECT candidate_id, finished_at FROM evaluations WHERE stage = 'explore'")
    )
    for cid, finished in finished_before.items():
        assert after[cid] == finished  # finished work was not repeated
    statuses = _rows(workdir, "SELECT status FROM evaluations")
    assert all(s != "pending" for (s,) in statuses)

    board = json.loads((workdir / "leaderboard.json").read_text())
    assert board["run"]["state"] == "finished"
    explore = board["explore"]["ranking"]
    assert {r["name"] for r in explore} == set(names)
    for row in explore:
        assert {
            "name",
            "parent",
            "stage",
            "fitness",
            "terms",
            "loss",
            "params",
            "status",
            "failure_reason",
            "folder",
        } <= set(row)
        if row["status"] == "evaluated":
            assert row["fitness"] == pytest.approx(
                sum(row["terms"][k] for k in ("loss", "benchmark", "judge"))
            )
    reference = next(r for r in explore if r["name"] == "deltanet")
    assert reference["terms"]["loss"] == pytest.approx(0.5)  # the baseline against itself
    verify = board["verify"]["ranking"]
    assert len(verify) == 2 and "deltanet" in {r["name"] for r in verify}
    assert all(r["status"] != "pending" for r in verify)
    for row in verify:  # each seed's folder holds its verification run and final checkpoint
        assert row["seeds"] == 2 and [r["stage"] for r in row["replicates"]] == [
            "verify", "verify-2"]  # fmt: skip
        for seed in row["replicates"]:
            assert list((workdir / seed["folder"]).glob("attempt*/train/checkpoints/*")), seed
        seeds = [json.loads((workdir / seed["folder"] / "attempt1/train/run.json").read_text())
                 ["config"]["seed"] for seed in row["replicates"]]  # fmt: skip
        assert seeds == [0, 1]  # the second seed trained with its own seed
    assert board["agents"]["researcher"].startswith("offline")
    assert board["config"]["seed"] == 0
    assert len(board["environments"]) == 3  # the first start and the two resumptions
    assert all("git_revision" in e and "packages" in e for e in board["environments"])
    # the cognition index saved under the relative workdir was loaded, not rebuilt
    assert "could not be loaded" not in output


@pytest.mark.slow  # about 6 minutes on 2 cores (the sandbox's declared data: test_sandbox_wall)
def test_evolution_on_a_corpus_and_tokenizer_outside_the_workdir(tmp_path):
    """The README's text command at small size: the baselines and a candidate train in the
    sandbox on the user's corpus and SentencePiece tokenizer, which live outside the run."""
    import sentencepiece as spm

    from asi_jax.data import corpus

    data = tmp_path / "data"
    data.mkdir()
    text = data / "corpus.txt"
    text.write_bytes(bytes(corpus.read_tokens(corpus.stdlib_files()[:4]).astype("uint8")))
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(data / "sp"),
        vocab_size=300,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    config = f"{ROOT / 'configs' / 'evolve_text.py'}:{text},{data / 'sp.model'}"
    small = ("--config.explore.train.steps=20", "--config.budget.candidates=1",
             "--config.verify.promote=0", "--config.explore.data.eval_examples=16")  # fmt: skip
    process = _evolve(config, "runs/text", tmp_path, *small)
    output, _ = process.communicate(timeout=3600)
    assert process.returncode == 0, output
    board = json.loads((tmp_path / "runs" / "text" / "leaderboard.json").read_text())
    rows = board["explore"]["ranking"]
    assert sorted(r["kind"] for r in rows) == ["baseline"] * 3 + ["candidate"]
    assert all(r["status"] == "evaluated" for r in rows), [r["failure_reason"] for r in rows]
    assert board["config"]["explore"]["model"]["vocab_size"] == 300  # the tokenizer's
    run = json.loads(next((tmp_path / "runs" / "text").glob(
        "candidates/*/explore/attempt1/train/run.json")).read_text())  # fmt: skip
    assert run["config"]["data"]["files"] == [str(text)]
    assert run["isolation"]["namespaces"] and run["isolation"]["landlock"]


def _cpu_hogs(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.slow  # about 8 minutes on 2 cores: everything runs beside two CPU hogs
def test_a_busy_machine_is_not_a_failure(tmp_path):
    """Two CPU hogs beside a run whose CPU-time floor is below what DeltaNet needs: the
    reference runs out of CPU time at the floor, is retried at twice it, and the candidates
    run at 4x what it took, so the run completes."""
    from asi_jax.candidates.engineer import EngineerConfig, run_candidate
    from asi_jax.evolution.config import from_config_dict

    config = _config(tmp_path, steps=60)
    hogs = _cpu_hogs(2)
    try:
        # What DeltaNet's evaluation costs here, now: the test's yardstick for the floors.
        spec = importlib.util.spec_from_file_location("tiny", config)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        evolution = from_config_dict(module.get_config())
        probe = EngineerConfig(check=evolution.check, train=evolution.explore,
                               reference="deltanet")  # fmt: skip
        measured = run_candidate("", probe, tmp_path / "probe", baseline="deltanet")
        assert measured.ok, measured.reason
        cpu = measured.attempts[0].cpu_seconds
        floor = max(1, int(0.7 * cpu))  # the first attempt runs out; twice it suffices
        overrides = (f"--config.limits.cpu_seconds={floor}", "--config.limits.wall_seconds=3600",
                     "--config.verify.promote=0")  # fmt: skip
        process = _evolve(config, "run", tmp_path, *overrides)
        output, _ = process.communicate(timeout=3600)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert process.returncode == 0, output
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["run"]["state"] == "finished"
    rows = board["explore"]["ranking"]
    assert [r["status"] for r in rows] == ["evaluated"] * 3, rows
    reference = next(r for r in rows if r["name"] == "deltanet")
    attempts = json.loads((tmp_path / "run" / reference["folder"] / "engineer.json").read_text())[
        "attempts"
    ]
    assert [a["limit"] for a in attempts] == ["cpu", None], attempts
    assert [a["limits"]["cpu_seconds"] for a in attempts] == [floor, 2 * floor]
    limits = board["limits"]["explore"]
    assert limits["cpu_seconds"] >= 4 * attempts[1]["cpu_seconds"] > floor


def test_resuming_with_another_config_is_refused(tmp_path):
    config = from_config_dict({"baselines": ["deltanet"], "budget": {"candidates": 1}})
    with Controller(config, tmp_path):
        pass
    changed = from_config_dict({"baselines": ["deltanet"], "seed": 3})
    with pytest.raises(EvolutionError, match=r"different configuration \(keys \['seed'\]\)"):
        Controller(changed, tmp_path)
    # A larger budget extends the run; other limits too: both are recorded.
    extended = {"baselines": ["deltanet"], "budget": {"candidates": 5},
                "limits": {"wall_seconds": 900.0}}  # fmt: skip
    with Controller(from_config_dict(extended), tmp_path) as controller:
        changes = controller.db.get_meta("config_changes")
        stored = controller.db.get_meta("config")
    assert [sorted(c) for c in changes] == [["at", "budget", "limits"]]
    assert changes[0]["budget"]["from"]["candidates"] == 1
    assert changes[0]["budget"]["to"]["candidates"] == 5
    assert changes[0]["limits"]["to"]["wall_seconds"] == 900.0
    assert stored["limits"]["wall_seconds"] == 900.0


def test_malformed_evolution_config_is_named():
    with pytest.raises(ValueError, match=r"budget.candidatez"):
        from_config_dict({"budget": {"candidatez": 3}})
    with pytest.raises(ValueError, match="reference_baseline 'deltanet' must be one of"):
        from_config_dict({"baselines": ["linear_attention"]})


def test_a_harness_error_fails_one_candidate_not_the_run(tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    with Controller(from_config_dict({"baselines": ["deltanet"]}), tmp_path) as controller:
        monkeypatch.setattr(controller, "_evaluate", broken)
        engineer = controller.engineer_config("explore")
        result = controller.evaluate({"code": "x", "name": "c", "id": 1}, "explore", engineer,
                                     None)  # fmt: skip
    assert not result.ok and result.stage == "engineer" and "disk full" in result.reason


_CONTROLLER_ONLY = """
import sys, zlib
from jax._src import xla_bridge
from asi_jax.candidates.engineer import Attempt, Result
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller

def fake_evaluate(self, candidate, stage, engineer, reviser):  # no sandbox, no training
    x = zlib.crc32(candidate["code"].encode()) % 1000 / 1000
    train = {"eval": {"heldout": {"loss": 1.0 + x, "accuracy": 0.5},
                      "mqar_kv2": {"loss": 1.0, "accuracy": x}}, "params": {"total": 1000}}
    attempt = Attempt(1, "h", True, None, None, {}, train, 0.1)
    return Result(True, None, None, {}, train, (attempt,), candidate["code"])

Controller._evaluate = fake_evaluate
config = from_config_dict({"baselines": ["linear_attention", "deltanet"],
                           "budget": {"candidates": 4}, "workers": 2})
with Controller(config, sys.argv[1], log=lambda _: None) as controller:
    board = controller.run()
print(board["explore"]["evaluated"], board["verify"]["evaluated"],
      xla_bridge.backends_are_initialized())
"""


def test_the_controller_leaves_the_accelerators_to_the_workers(tmp_path):
    """A whole run's controller logic (proposing, judging, scoring, analysing, promoting,
    the leaderboard) never initialises a JAX backend: on a GPU that would claim most of its
    memory in the controller, away from the sandboxed workers."""
    done = subprocess.run([sys.executable, "-c", _CONTROLLER_ONLY, str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["6", "4", "False"]  # 4 candidates + 2 baselines; 2 + 2
