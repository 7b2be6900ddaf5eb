"""Candidates: the bad-candidate corpus is rejected reason by reason, the good one trains,
the sandbox hides secrets and refuses files, sockets and processes, and revision works."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from train_testing import tiny

from asi_jax.candidates import policy
from asi_jax.candidates.engineer import (
    EngineerConfig,
    evaluate_candidate_run,
    revise,
    run_candidate,
)
from asi_jax.candidates.sandbox import Limits, run_worker, scrubbed_environment
from asi_jax.tasks.linear_attention.checker import CheckConfig
from asi_jax.tasks.linear_attention.contract import MIXER
from asi_jax.train.config import MonitorConfig

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "candidates"
GOOD = CORPUS / "good_gated_delta.py"
# Ordinary mixers that must be accepted (ok_*.py); every other file is a bad candidate.
ACCEPTED = sorted(CORPUS.glob("ok_*.py"))
BAD = sorted(p for p in CORPUS.glob("*.py") if p != GOOD and p not in ACCEPTED)

# Small enough to keep the suite quick, large enough for each stage to mean something.
CHECK = CheckConfig(d_model=32, num_heads=2, seq_lens=(1, 19), cost_seq_len=128)
TRAIN = dataclasses.replace(tiny(steps=40, log_every=10), monitor=MonitorConfig(min_loss=1.0))


def _expectation(path: Path) -> tuple[set[str], str]:
    """`# expect: stage[|stage]: pattern` on a candidate's first line."""
    match = re.match(r"# expect: ([\w|]+): (.+)", path.read_text().splitlines()[0])
    assert match, f"{path.name} has no '# expect:' line"
    return set(match.group(1).split("|")), match.group(2)


def test_corpus_has_enough_bad_candidates():
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_candidate_is_rejected_for_the_right_reason(path, tmp_path):
    stages, pattern = _expectation(path)
    train = TRAIN if "train" in stages else None
    wall = 20.0 if path.stem == "endless_loop" else 300.0
    config = EngineerConfig(check=CHECK, train=train, limits=Limits(wall_seconds=wall))
    result = run_candidate(path.read_text(), config, tmp_path)
    assert not result.ok
    assert result.stage in stages, (result.stage, result.reason)
    assert re.search(pattern, result.reason or ""), result.reason
    saved = json.loads((tmp_path / "engineer.json").read_text())
    assert saved["stage"] == result.stage and len(saved["attempts"]) == 1


@pytest.mark.parametrize("path", [
    # gla and delta_rule checked up to T = 1024 and trained: 80 s, with the slow tests.
    pytest.param(p, marks=pytest.mark.slow) if p.stem == "ok_checker_pallas_ops" else p
    for p in ACCEPTED
], ids=lambda p: p.stem)  # fmt: skip
def test_ordinary_mixers_are_accepted_and_train(path, tmp_path):
    config = EngineerConfig(check=CHECK, train=TRAIN)
    result = run_candidate(path.read_text(), config, tmp_path)
    assert result.ok, (result.stage, result.reason)
    assert result.train["status"] == "completed"


# Checks, trains and re-evaluates in the sandbox: 2-4 min (the fast suite trains candidates in
# test_ordinary_mixers_are_accepted_and_train).
@pytest.mark.slow
def test_good_candidate_passes_trains_and_is_reevaluated_in_the_sandbox(tmp_path):
    train = dataclasses.replace(TRAIN, train=dataclasses.replace(TRAIN.train, checkpoint_every=40))
    config = EngineerConfig(check=CHECK, train=train)
    result = run_candidate(GOOD.read_text(), config, tmp_path)
    assert result.ok, (result.stage, result.reason)
    figures = result.check["figures"]
    assert figures["params"] > 0 and figures["cost_exponent"] < 1.5
    assert result.train["status"] == "completed" and result.train["steps"] == 40
    assert result.train["eval"]["heldout"]["loss"] < 5.0
    assert (tmp_path / "attempt1" / "train" / "metrics.jsonl").exists()
    assert '"heldout"' in (tmp_path / "attempt1.log").read_text()  # the worker's log, kept
    run = json.loads((tmp_path / "attempt1" / "train" / "run.json").read_text())
    assert run["config"]["mixer"] == "candidate.py"  # what was trained, not the config's default

    again = evaluate_candidate_run(tmp_path / "attempt1", eval_examples=16)
    assert again["step"] == 40
    assert again["eval"]["heldout"]["loss"] == pytest.approx(
        result.train["eval"]["heldout"]["loss"], rel=1e-5
    )
    (tmp_path / "attempt1" / "candidate.py").write_text("import os\n")  # rewritten since
    with pytest.raises(RuntimeError, match="no longer passes the policy"):
        evaluate_candidate_run(tmp_path / "attempt1")


def test_policy_accepts_the_good_candidate_and_names_lines():
    assert policy.check_source(GOOD.read_text(), MIXER) == []
    source = "import jax\nfrom flax import nnx\njax.numpy.sum = None\n\nclass Mixer(nnx.Module):\n"
    source += "    def __init__(self, d, h, *, rngs):\n        super().__init__()\n"
    source += "        self.x = eval('1')\n"
    found = [(v.line, v.construct) for v in policy.check_source(source, MIXER)]
    assert found == [(3, "assignment to jax.*"), (8, "eval")]


def test_policy_requires_a_mixer_class():
    violations = policy.check_source("import math\n", MIXER)
    assert [v.construct for v in violations] == ["class Mixer"]


def test_worker_environment_has_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", ".45")  # JAX's settings pass
    monkeypatch.setenv("GEMINI_API_KEY", "secret-gemini")
    monkeypatch.setenv("OPENAI_API_KEY", "secret-openai")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "secret-token")
    outcome = run_worker({"job": "environment"}, tmp_path, Limits(wall_seconds=120))
    assert outcome.ok, outcome.error
    names = set(outcome.response["environment"])
    assert not names & {"GEMINI_API_KEY", "OPENAI_API_KEY", "MY_SERVICE_TOKEN"}
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" in names
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "JAX_PLATFORMS", "XLA_FLAGS",
                     "CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS",
                     "XLA_PYTHON_CLIENT_MEM_FRACTION"}  # fmt: skip
    assert outcome.response["cwd"] == str(tmp_path.resolve())


def test_workers_can_be_pinned_to_one_accelerator(tmp_path):
    env = scrubbed_environment(tmp_path, visible_devices="1")
    assert env["CUDA_VISIBLE_DEVICES"] == "1"  # TPU hosts: see test_devices.py
    # pinned where there is no such accelerator: a clear failure, not a silent CPU run
    config = EngineerConfig(check=CHECK, visible_devices="97")
    result = run_candidate(GOOD.read_text(), config, tmp_path / "pinned")
    assert not result.ok and result.stage == "sandbox"
    assert "pinned to accelerator 97, but JAX found only the CPU" in result.reason


def _check_in_worker(tmp_path: Path, init_lines: list[str], limits: Limits):
    """Runs the worker's check on a Mixer whose __init__ runs `init_lines`, sent straight to
    the worker (no static policy): the run-time wall alone."""
    body = "".join(f"        {line}\n" for line in init_lines)
    source = (
        "from flax import nnx\n\nclass Mixer(nnx.Module):\n"
        f"    def __init__(self, d, h, *, rngs):\n{body}\n"
        "    def __call__(self, x):\n        return x\n"
    )
    (tmp_path / "candidate.py").write_text(source)
    request = {
        "job": "check",
        "task": "linear_attention",
        "check": dataclasses.asdict(CHECK),
        "train": None,
    }
    outcome = run_worker(request, tmp_path, limits)
    assert outcome.ok, outcome.error
    return outcome


# What the static policy would reject, sent straight to the worker: the run-time wall alone.
_ESCAPES = {
    "read_outside": "open('/etc/hostname').read()",
    "write_outside": "open('/tmp/asi_jax_escape.txt', 'w').write('x')",
    "socket": "__import__('socket').create_connection(('127.0.0.1', 9))",
    # a local socket may exist (asyncio needs a pair) but reach no named one
    "unix_socket": "(s := __import__('socket')).socket(s.AF_UNIX).connect('/run/x.sock')",
    "udp": "(s := __import__('socket')).socket(s.AF_INET, s.SOCK_DGRAM).sendto(b'', ('::1', 9))",
    "process": "__import__('subprocess').run(['true'])",
    "system": "__import__('os').system('true')",
}


@pytest.mark.parametrize("name", sorted(_ESCAPES))
def test_worker_refuses_files_sockets_and_processes(name, tmp_path):
    outcome = _check_in_worker(tmp_path, [_ESCAPES[name]], Limits(wall_seconds=120))
    response = outcome.response
    assert response["stage"] == "instantiate"
    assert "PermissionError: sandbox:" in response["reason"], response["reason"]
    assert not Path("/tmp/asi_jax_escape.txt").exists()


def test_revise_fixes_a_failing_candidate_from_its_error(tmp_path):
    broken = (CORPUS / "wrong_shape.py").read_text()
    errors = []

    def reviser(source: str, error: str) -> str:
        errors.append(error)
        return GOOD.read_text()

    result = revise(broken, reviser, EngineerConfig(check=CHECK, max_attempts=3), tmp_path)
    assert result.ok and len(result.attempts) == 2
    assert [a.ok for a in result.attempts] == [False, True]
    assert errors and errors[0].startswith("stage shapes failed")
    assert result.attempts[0].code_hash != result.attempts[1].code_hash


def test_revise_stops_after_max_attempts_or_when_the_reviser_gives_up(tmp_path):
    broken = (CORPUS / "import_os.py").read_text()
    config = EngineerConfig(check=CHECK, max_attempts=2)
    result = revise(broken, lambda s, e: s + "\n# tried again\n", config, tmp_path / "a")
    assert not result.ok and len(result.attempts) == 2 and result.stage == "policy"
    for gives_up in (lambda s, e: None, lambda s, e: s):  # no repair, or the same source
        result = revise(broken, gives_up, config, tmp_path / "b")
        assert not result.ok and len(result.attempts) == 1


def test_check_candidate_script_exit_codes(tmp_path):
    script = str(ROOT / "scripts" / "check_candidate.py")

    def run(*args):
        return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                              cwd=ROOT)  # fmt: skip

    rejected = run(f"--candidate={CORPUS / 'open_socket.py'}")
    assert rejected.returncode == 1
    verdict = json.loads(rejected.stdout)
    assert verdict["ok"] is False and verdict["stage"] == "policy"
    assert run().returncode == 2
    assert run(f"--candidate={tmp_path / 'missing.py'}").returncode == 2


def test_files_in_the_candidate_folder_cannot_shadow_imports(tmp_path):
    (tmp_path / "flax.py").write_text("raise SystemExit('shadowed')\n")
    outcome = run_worker({"job": "environment"}, tmp_path, Limits(wall_seconds=120))
    assert outcome.ok, outcome.output_tail


def test_worker_runs_under_its_limits_and_cannot_raise_them(tmp_path):
    raise_it = ["r = __import__('resource')",
                "r.setrlimit(r.RLIMIT_AS, (r.RLIM_INFINITY, r.RLIM_INFINITY))"]  # fmt: skip
    outcome = _check_in_worker(tmp_path, raise_it, Limits(wall_seconds=120, memory_bytes=6 << 30))
    assert "sandbox: resource.setrlimit is not allowed" in outcome.response["reason"]


def test_an_address_space_limit_of_zero_means_none(tmp_path):
    report = ["r = __import__('resource')",
              "raise ValueError(f'limits {r.getrlimit(r.RLIMIT_AS)}')"]  # fmt: skip
    inherited = str(resource.getrlimit(resource.RLIMIT_AS))  # 0: the worker keeps its parent's
    for limit, expected in ((6 << 30, f"({6 << 30}, {6 << 30})"), (0, inherited)):
        outcome = _check_in_worker(tmp_path, report, Limits(wall_seconds=120, memory_bytes=limit))
        assert f"limits {expected}" in outcome.response["reason"], outcome.response["reason"]
