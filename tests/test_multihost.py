"""Multi-host training on one machine: two `jax.distributed` processes of 4 simulated CPU
devices each train as one process with 8 does, their collectively written checkpoint restores
on one process, and a mixer file trains there through programs traced in the sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from train_testing import losses, tiny_dict, write_config_file

from asi_jax.candidates.sandbox import scrubbed_environment
from asi_jax.train.distributed import DistributedConfig

ROOT = Path(__file__).resolve().parents[1]
CANDIDATE = ROOT / "tests" / "candidates" / "good_gated_delta.py"
TIMEOUT = 600  # seconds for the two processes together; a hang fails instead of blocking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}  # fmt: skip


def _run_together(commands: list[list[str]], env: dict[str, str], logs: Path) -> None:
    """Runs the commands at once; kills them all (their whole process groups) as soon as one
    fails or the time is up, and fails with the failing one's log."""
    logs.mkdir(parents=True, exist_ok=True)
    files = [open(logs / f"process{i}.log", "w") for i in range(len(commands))]  # noqa: SIM115
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                              start_new_session=True)
             for c, f in zip(commands, files, strict=True)]  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for f in files:
            f.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, (logs / f"process{i}.log").read_text()[-3000:]


_REFERENCE = """
import json, sys
from ml_collections import config_dict
from asi_jax.evals.checkpoint import evaluate_run
from asi_jax.train.run import run
import jax
assert len(jax.devices()) == 8 and jax.process_count() == 1
config = config_dict.ConfigDict(json.loads(sys.argv[1]))
result = run(config, sys.argv[2])
restored = evaluate_run(sys.argv[3], kv_pairs=[])
print(json.dumps({"eval": result["eval"]["heldout"]["loss"],
                  "restored": restored["eval"]["heldout"]["loss"]}))
"""


@pytest.mark.slow
def test_two_processes_match_one_and_restore_on_one(tmp_path):
    config = tiny_dict("gated_deltanet", steps=10, log_every=2, checkpoint_every=10,
                       mesh_data=2, mesh_fsdp=4)  # fmt: skip
    config_file = write_config_file(tmp_path / "config.py", config)
    shared = tmp_path / "two"  # one folder both processes write, as on a shared filesystem
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = [[sys.executable, "scripts/train.py", f"--config={config_file}",
                 f"--workdir={shared}", f"--coordinator={coordinator}", "--num_processes=2",
                 f"--process_id={i}"] for i in range(2)]  # fmt: skip
    _run_together(commands, _env(4), tmp_path / "logs")

    single = tmp_path / "one"
    done = subprocess.run(
        [sys.executable, "-c", _REFERENCE, json.dumps(config), str(single), str(shared)],
        capture_output=True, text=True, env=_env(8), cwd=ROOT, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    two, one = losses(shared), losses(single)
    assert sorted(two) == sorted(one) == [2, 4, 6, 8, 10]  # one line a step: process 0 writes
    np.testing.assert_allclose([two[s] for s in sorted(one)], [one[s] for s in sorted(one)],
                               rtol=1e-4)  # fmt: skip
    result = json.loads((shared / "result.json").read_text())
    np.testing.assert_allclose(result["eval"]["heldout"]["loss"], out["eval"], rtol=1e-4)
    assert json.loads((shared / "run.json").read_text())["mesh"] == {"data": 2, "fsdp": 4}
    # Written by both processes, restored by one with all 8 devices.
    np.testing.assert_allclose(out["restored"], result["eval"]["heldout"]["loss"], rtol=1e-5)


def test_settings_from_the_environment():
    assert not DistributedConfig.from_env({}).multi_host
    two = DistributedConfig.from_env({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234",
                                      "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})  # fmt: skip
    assert two == DistributedConfig("10.0.0.2:1234", 2, 1) and two.multi_host
    assert DistributedConfig.from_env({"TPU_WORKER_HOSTNAMES": "w0,w1"}).auto
    assert not DistributedConfig.from_env({"TPU_WORKER_HOSTNAMES": "w0"}).multi_host
    for bad in ({"num_processes": 2}, {"coordinator": "a:1", "num_processes": 2, "process_id": 2},
                {"coordinator": "nohost", "num_processes": 2}):  # fmt: skip
        with pytest.raises(ValueError):
            DistributedConfig(**bad)


@pytest.mark.slow
def test_a_mixer_file_trains_on_two_processes_through_the_sandbox_as_on_one(tmp_path):
    """Each process has the file traced in a sandboxed worker and runs the programs; the
    losses are those of the file trained in one trusted process with 8 devices."""
    config = tiny_dict(str(CANDIDATE), steps=6, log_every=2, mesh_data=2, mesh_fsdp=4)
    config_file = write_config_file(tmp_path / "config.py", config)
    shared = tmp_path / "two"
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = [[sys.executable, "scripts/train.py", f"--config={config_file}",
                 f"--workdir={shared}", f"--coordinator={coordinator}", "--num_processes=2",
                 f"--process_id={i}"] for i in range(2)]  # fmt: skip
    _run_together(commands, _env(4), tmp_path / "logs")
    for i in range(2):  # each process traced its own copy, in its own folder
        assert (shared / "programs" / f"process{i}" / "program" / "step.bin").is_file()
    assert json.loads((shared / "run.json").read_text())["program"].endswith("program")

    single = tmp_path / "one"
    done = subprocess.run(
        [sys.executable, "scripts/train.py", f"--config={config_file}", f"--workdir={single}"],
        capture_output=True, text=True, env=_env(8), cwd=ROOT, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    two, one = losses(shared), losses(single)
    assert sorted(two) == sorted(one) == [2, 4, 6]
    np.testing.assert_allclose([two[s] for s in sorted(one)], [one[s] for s in sorted(one)],
                               rtol=1e-4)  # fmt: skip


def test_a_mixer_file_that_fails_the_policy_is_refused_before_any_rendezvous(tmp_path):
    """The static policy runs before the rendezvous and the sandbox, as for a candidate's
    file: nothing is traced, and no process waits for the others."""
    hostile = tmp_path / "hostile.py"
    hostile.write_text(CANDIDATE.read_text() + "\nimport os\nos.system('touch pwned')\n")
    done = subprocess.run(
        [sys.executable, "scripts/train.py",
         f"--config={write_config_file(tmp_path / 'config.py', tiny_dict(str(hostile)))}",
         f"--workdir={tmp_path / 'w'}", f"--coordinator=127.0.0.1:{_free_port()}",
         "--num_processes=2", "--process_id=0"],  # nobody else joins: it must not wait
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=_env(1),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "does not pass the sandbox's policy" in done.stderr
    assert not (ROOT / "pwned").exists() and not (tmp_path / "w" / "pwned").exists()
    assert not (tmp_path / "w" / "programs" / "process0" / "program").exists()


def test_train_script_needs_a_coordinator_for_several_processes(tmp_path):
    config = write_config_file(tmp_path / "config.py", tiny_dict(str(CANDIDATE)))
    done = subprocess.run(
        [sys.executable, "scripts/train.py", f"--config={config}", f"--workdir={tmp_path / 'w'}",
         "--num_processes=2"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=_env(1),
    )  # fmt: skip
    assert done.returncode == 2 and "2 processes need a coordinator address" in done.stderr


def test_the_sandbox_never_inherits_a_job(tmp_path, monkeypatch):
    """A worker started on a host of a multi-host job does not join it."""
    job = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
           "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "MEGASCALE_COORDINATOR_ADDRESS")  # fmt: skip
    for name in job:
        monkeypatch.setenv(name, "x")
    env = scrubbed_environment(tmp_path)
    assert not set(job) & set(env)
