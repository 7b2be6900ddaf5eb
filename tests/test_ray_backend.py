"""The Ray backend on a local cluster (a head and two worker nodes on this machine, started
here): an evolution ranks as the same run on the local backend; a Ray worker killed in the
middle of an evaluation loses nothing and counts nothing twice; kill -9 of the controller,
then the run resumes on Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from asi_jax.candidates.engineer import EngineerConfig
from asi_jax.evolution.backends import BackendError, RayBackend
from asi_jax.evolution.config import EvolutionConfig, RayConfig, VerifyConfig
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.train.config import to_dict

sys.path.insert(0, str(Path(__file__).parent))
from test_task_boundary import CONFIG, _ranking, kill_9_mid_run
from train_testing import losses, tiny, write_config_file

pytest.importorskip("ray")
_RAY = str(Path(sys.executable).parent / "ray")
_TAG = "ASI_JAX_TEST_RAY_CLUSTER"  # in the environment of every process of the test's cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tagged(root: Path) -> list[int]:
    """The processes whose environment carries the cluster's tag (Ray's workers start
    sessions of their own, so the nodes' process groups do not hold them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{_TAG}={root}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _processes(root: Path, title: str) -> list[int]:
    """The cluster's processes whose title (Ray's `ray::<task name>`) starts with `title`."""
    found = []
    for pid in _tagged(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                found.append(pid)
        except OSError:
            continue
    return found


@dataclasses.dataclass(frozen=True)
class Cluster:
    address: str
    root: Path  # the nodes' temp folders, and TMPDIR of every process of the cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head without CPUs (evaluations run on the workers) and two worker nodes of one CPU;
    every process of it is killed afterwards, by id."""
    import ray

    root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    # No token (a ~/.ray/auth_token left by another Ray would be required of every client).
    auth, os.environ["RAY_AUTH_MODE"] = os.environ.get("RAY_AUTH_MODE"), "disabled"
    (root / "tmp").mkdir()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", _TAG: str(root),
           "TMPDIR": str(root / "tmp")}  # fmt: skip
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
              "--object-store-memory=100000000"]  # fmt: skip
    nodes = [
        [_RAY, "start", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
         f"--temp-dir={root / 'head'}", *common],
        *([_RAY, "start", f"--address={address}", "--num-cpus=1", f"--temp-dir={root / name}",
           *common] for name in ("worker1", "worker2")),
    ]  # fmt: skip
    processes = []
    try:
        for i, command in enumerate(nodes):
            with open(root / f"node{i}.log", "w") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  start_new_session=True))  # fmt: skip
            if i == 0:  # the workers need the head's address to answer
                deadline = time.monotonic() + 120
                while subprocess.run([_RAY, "status", f"--address={address}"], env=env,
                                     capture_output=True).returncode:  # fmt: skip
                    assert time.monotonic() < deadline, (root / "node0.log").read_text()[-2000:]
                    time.sleep(0.5)
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        try:
            deadline = time.monotonic() + 120
            while sum(n["Alive"] for n in ray.nodes()) < 3:
                assert time.monotonic() < deadline, "the worker nodes did not join"
                time.sleep(0.5)
        finally:
            ray.shutdown()
        yield Cluster(address, root)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # the node: its raylet, store, agents
            p.wait()
        deadline = time.monotonic() + 10
        while (pids := _tagged(root)) and time.monotonic() < deadline:
            time.sleep(0.5)  # Ray's workers leave once their node is gone
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        if auth is None:
            del os.environ["RAY_AUTH_MODE"]
        else:
            os.environ["RAY_AUTH_MODE"] = auth


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """The toy task's run on the local backend, uninterrupted (one worker: deterministic)."""
    with Controller(CONFIG, tmp_path_factory.mktemp("local"), log=lambda _: None) as controller:
        return controller.run()


def on_ray(config: EvolutionConfig, address: str, **ray: object) -> EvolutionConfig:
    return dataclasses.replace(config, backend="ray", ray=RayConfig(address=address, **ray))


def _attempts_per_evaluation(workdir: Path) -> list[int]:
    with sqlite3.connect(workdir / DATABASE) as db:
        return [n for (n,) in db.execute("SELECT COUNT(*) FROM attempts "
                                         "GROUP BY candidate_id, stage")]  # fmt: skip


def _no_pending(workdir: Path) -> bool:
    with sqlite3.connect(workdir / DATABASE) as db:
        return db.execute("SELECT COUNT(*) FROM evaluations WHERE status = 'pending'"
                          ).fetchone()[0] == 0  # fmt: skip


@pytest.mark.slow
def test_an_evolution_on_ray_ranks_as_the_same_run_on_the_local_backend(cluster, finished,
                                                                        tmp_path):  # fmt: skip
    """One worker: the run is deterministic, so the Ray run must match the local one exactly.
    The sandbox folders go to the shared storage, the engineer's record to the workdir."""
    workdir, shared = tmp_path / "run", tmp_path / "shared"
    lines: list[str] = []
    config = on_ray(CONFIG, cluster.address, storage=str(shared))
    with Controller(config, workdir, log=lines.append) as controller:
        board = controller.run()
    assert _ranking(board, "explore") == _ranking(finished, "explore")
    assert _ranking(board, "verify") == _ranking(finished, "verify")
    assert board["run"]["state"] == "finished" and _no_pending(workdir)
    assert set(_attempts_per_evaluation(workdir)) == {1}
    assert any(line.startswith("ray: 3 node(s)") for line in lines)
    with sqlite3.connect(workdir / DATABASE) as db:
        candidates = db.execute("SELECT id, name FROM candidates").fetchall()
    assert len(candidates) == 2 + 6
    for cid, name in candidates:
        folder = f"candidates/{cid:04d}-{name}/explore"
        assert (shared / folder / "attempt1" / "candidate.py").is_file()
        assert (shared / folder / "attempt1.log").is_file()
        assert (workdir / folder / "engineer.json").is_file()
        assert not (workdir / folder / "attempt1").exists()


@pytest.mark.slow
def test_a_ray_worker_killed_mid_evaluation_loses_nothing_and_counts_nothing_twice(
        cluster, finished, tmp_path):  # fmt: skip
    """SIGKILL to the Ray worker process running an evaluation (its sandbox dies with it):
    the evaluation runs again, and the run ends as the uninterrupted one."""
    workdir = tmp_path / "run"
    killed: list[str] = []
    stop = threading.Event()

    def kill_the_third_evaluation() -> None:  # the reference and the cube baseline first
        seen: set[str] = set()  # evaluations (Ray reuses its worker processes)
        while not stop.is_set():
            for pid in _processes(cluster.root, "ray::evaluate "):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                except OSError:
                    continue
                seen.add(title)
                if len(seen) == 3:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(title.removeprefix("ray::evaluate "))
                    return
            time.sleep(0.05)

    lines: list[str] = []
    killer = threading.Thread(target=kill_the_third_evaluation, daemon=True)
    killer.start()
    try:
        with Controller(on_ray(CONFIG, cluster.address, max_retries=1), workdir,
                        log=lines.append) as controller:  # fmt: skip
            board = controller.run()
    finally:
        stop.set()
        killer.join()
    assert killed, "no evaluation was seen running on the cluster"
    retried = [line for line in lines if "died" in line and "runs again, retry 1 of 1" in line]
    assert len(retried) == 1 and killed[0] in retried[0], (killed, lines)
    assert _ranking(board, "explore") == _ranking(finished, "explore")
    assert _ranking(board, "verify") == _ranking(finished, "verify")
    assert board["explore"]["failed"] == 0 and _no_pending(workdir)
    assert set(_attempts_per_evaluation(workdir)) == {1}  # the killed try left no row


_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_ray_backend import CONFIG, on_ray
from asi_jax.evolution.controller import evolve
evolve(on_ray(CONFIG, {address!r}), {workdir!r}, log=lambda line: print(line, flush=True))
"""


@pytest.mark.slow
def test_kill_9_of_the_controller_then_resume_on_ray(cluster, finished, tmp_path):
    workdir = tmp_path / "run"
    script = _RUN.format(tests=str(Path(__file__).parent), address=cluster.address,
                         workdir=str(workdir))  # fmt: skip
    kill_9_mid_run(script, workdir)
    with Controller(on_ray(CONFIG, cluster.address), workdir, log=lambda _: None) as controller:
        board = controller.run()
    assert _ranking(board, "explore") == _ranking(finished, "explore")
    assert _ranking(board, "verify") == _ranking(finished, "verify")
    assert board["run"]["state"] == "finished" and _no_pending(workdir)
    assert set(_attempts_per_evaluation(workdir)) == {1}  # nothing finished ran twice


@pytest.mark.slow
def test_a_resource_no_node_has_is_refused_before_anything_runs(cluster, tmp_path):
    with pytest.raises(BackendError, match=r"no node of the Ray cluster .*\{'CPU': 1.0, "
                                           r"'TPU': 4.0\}\); its nodes have"):  # fmt: skip
        Controller(on_ray(CONFIG, cluster.address, resources=(("TPU", 4),)), tmp_path / "a",
                   log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "a" / DATABASE).exists()  # refused before the database


def test_a_cluster_that_is_not_there_and_pinning_on_ray_are_refused(tmp_path):
    with pytest.raises(BackendError, match=r"cannot join the Ray cluster at ray\.address=.*"
                                           r"ray start --head"):  # fmt: skip
        Controller(on_ray(CONFIG, f"127.0.0.1:{_free_port()}"), tmp_path / "b",
                   log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "b" / DATABASE).exists()
    with pytest.raises(ValueError, match="pin_devices applies to the local backend"):
        dataclasses.replace(on_ray(CONFIG, "auto"), pin_devices=True)
    with pytest.raises(ValueError, match=r"ray.resources are \(name, amount\) pairs"):
        RayConfig(resources=("TPU",))
    with pytest.raises(ValueError, match=r"verify\.hosts=2 spreads a verification run"):
        dataclasses.replace(CONFIG, verify=VerifyConfig(promote=1, seeds=1, hosts=2))
    with pytest.raises(ValueError, match=r"verify\.hosts must be >= 1"):
        VerifyConfig(hosts=0)


_MULTI_HOST_CANDIDATE = Path(__file__).parent / "candidates" / "good_gated_delta.py"


@pytest.mark.slow
def test_a_verification_runs_as_one_job_over_two_nodes_as_one_process_would(cluster, tmp_path):
    """verify.hosts=2: the candidate's run is one jax.distributed job of two processes on the
    two worker nodes (its file traced in each node's sandbox), with the losses of the file
    trained in one process of 2 devices; a baseline trains the same way; the controller asks
    for it in verification only."""
    config = on_ray(CONFIG, cluster.address)
    config = dataclasses.replace(config, verify=VerifyConfig(promote=1, seeds=1, hosts=2))
    with Controller(config, tmp_path / "run", log=lambda _: None) as controller:
        assert controller.engineer_config("verify-2").hosts == 2
        assert controller.engineer_config("explore").hosts == 1
    backend = RayBackend(RayConfig(address=cluster.address), tmp_path, log=lambda _: None)
    try:
        experiment = tiny("deltanet", steps=6, log_every=2)
        engineer = EngineerConfig(task="linear_attention", train=experiment, hosts=2)
        source = _MULTI_HOST_CANDIDATE.read_text()
        (attempt,) = backend.run_attempts(1, source, engineer, tmp_path / "cand" / "verify",
                                          None, None)  # fmt: skip
        assert attempt.ok, attempt.reason
        run = json.loads((tmp_path / "cand" / "verify" / "train" / "run.json").read_text())
        assert run["mesh"] == {"data": 2, "fsdp": 1} and run["program"]
        (baseline,) = backend.run_attempts(
            1, "deltanet", engineer, tmp_path / "base" / "verify", "deltanet", None
        )
        assert baseline.ok and baseline.train["status"] == "completed", baseline.reason
    finally:
        backend.close()
    single = tmp_path / "single"
    config_file = write_config_file(
        tmp_path / "single.py",
        {**to_dict(experiment), "mixer": str(_MULTI_HOST_CANDIDATE)},
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}  # fmt: skip
    done = subprocess.run([sys.executable, "scripts/train.py", f"--config={config_file}",
                           f"--workdir={single}"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).parents[1], timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    two, one = losses(tmp_path / "cand" / "verify" / "train"), losses(single)
    assert sorted(two) == sorted(one) == [2, 4, 6]
    np.testing.assert_allclose([two[s] for s in one], [one[s] for s in one], rtol=1e-4)
