"""Where an evaluation's sandboxed attempts run: in the controller's worker threads (local), or
as Ray tasks on a cluster's nodes (ray).

    backend = make_backend(config, workdir, log)     # config.backend: "local" or "ray"
    result = revise(source, reviser, engineer, folder, runner=backend.run_attempts)
    backend.close()

Only the sandboxed attempts (`engineer.run_attempts`) move: the revision loop, whose reviser
may call a language model, and the recording of results stay with the controller, the
database's only writer. On Ray, a thread of the controller's pool waits on each task, so
`workers` still bounds the evaluations in flight. A task holds its resources on its node
(`RayConfig`: CPUs, GPUs, custom resources such as TPU chips, memory), runs the sandbox there
in a node-local scratch folder, copies that folder to shared storage (`ray.storage`, an
`etils.epath` folder, local or gs://; by default the workdir) and returns the attempts.

A verification with `verify.hosts` > 1 (EngineerConfig.hosts) runs as one `jax.distributed`
job over that many nodes: a placement group of one bundle per node (STRICT_SPREAD), and on
each a Ray task that starts `scripts/train.py` as process i of the job, with the coordinator on
the first bundle's node and the workdir on shared storage. There train.py has the candidate's
file traced in the node's sandbox and runs the programs (`asi_jax.train.exported`); a
baseline, our own code, trains directly. Process 0's result.json is the evaluation's result.

A node or Ray worker that dies (a Ray system error, not the candidate's failure, which comes
back as a failed attempt and is never retried) sends the evaluation to another try, logged,
up to `ray.max_retries` times; after that the evaluation is recorded as failed with failure
stage "infrastructure". A retried evaluation cannot be counted twice: its row is written once,
by the controller, from the one result that came back. `import ray` happens only here, and
only for backend="ray".
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etils import epath

import asi_jax
from asi_jax.candidates.engineer import (
    Attempt,
    EngineerConfig,
    code_hash,
    run_attempts,
    task_file,
)
from asi_jax.candidates.sandbox import Cancelled
from asi_jax.evolution.config import EvolutionConfig, RayConfig
from asi_jax.tasks import get_task, import_task_file
from asi_jax.train.config import to_dict

_POLL_SECONDS = 0.25  # how often a thread waiting on a Ray task looks at the cancel event
INSTALL = "pip install 'asi-jax[ray]'"


class BackendError(RuntimeError):
    """The backend cannot run evaluations (Ray missing, no cluster, no node that fits)."""


class InfrastructureError(RuntimeError):
    """An evaluation's node or worker died more than `ray.max_retries` times."""


class LocalBackend:
    """The attempts run in the calling thread, on this machine (the default)."""

    def run_attempts(self, first: int, source: str, config: EngineerConfig, folder: Path,
                     baseline: str | None, cancel: threading.Event | None
                     ) -> list[Attempt]:  # fmt: skip
        if config.hosts > 1:
            raise BackendError(f"a run over {config.hosts} hosts needs backend='ray'")
        return run_attempts(first, source, config, folder, baseline, cancel)

    def close(self) -> None:
        pass


def _assigned_devices() -> str | None:
    """The GPU or TPU ids Ray assigned the running task, as `visible_devices` ("0,1")."""
    import ray

    ids = ray.get_runtime_context().get_accelerator_ids()
    for kind in ("GPU", "TPU"):
        if ids.get(kind):
            return ",".join(str(i) for i in ids[kind])
    return None


def _copy_folder(source: Path, destination: epath.Path) -> None:
    """Copies the regular files under `source` to `destination` (local or gs://), replacing
    what an earlier, interrupted try left of the same entries; links are not followed (the
    candidate wrote the folder)."""
    for entry in source.iterdir():
        target = destination / entry.name
        if target.is_dir():
            target.rmtree()
        elif target.exists():
            target.unlink()
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        target = destination / path.relative_to(source).as_posix()
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as f, target.open("wb") as g:
            shutil.copyfileobj(f, g)


def _on_node(payload: bytes, task_module: str | None, task_path: str | None,
             destination: str) -> list[Attempt]:  # fmt: skip
    """The Ray task: the attempts in a scratch folder of this node, pinned to the devices Ray
    assigned, then copied to `destination`."""
    if task_path:  # a task defined outside asi_jax: its classes are in the payload
        import_task_file(task_module, task_path)
    first, source, config, baseline = pickle.loads(payload)
    if (devices := _assigned_devices()) is not None:
        config = dataclasses.replace(config, visible_devices=devices)
    scratch = Path(tempfile.mkdtemp(prefix="asi_jax-ray-"))
    try:
        attempts = run_attempts(first, source, config, scratch, baseline, None)
        _copy_folder(scratch, epath.Path(destination))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return attempts


TRAIN_SCRIPT = Path(asi_jax.__file__).resolve().parents[1] / "scripts" / "train.py"
_OUTPUT_TAIL = 3000  # characters of a process's output kept in a failed evaluation's reason


def _coordinator() -> str:
    """This node's address and a port free on it now: where process 0 of a job listens."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return f"{ray.util.get_node_ip_address()}:{port}"


def _host_process(index: int, hosts: int, coordinator: str, experiment: dict,
                  source: str, baseline: str | None, workdir: str,
                  wall_seconds: float) -> dict:  # fmt: skip
    """The Ray task of one host: `scripts/train.py` as process `index` of `hosts`, training
    into `workdir` (shared by all of them), killed after `wall_seconds`. Returns its exit
    code, the tail of its output and, from process 0, result.json's data."""
    scratch = Path(tempfile.mkdtemp(prefix="asi_jax-host-"))
    try:
        mixer = baseline
        if baseline is None:  # traced in this node's sandbox by train.py, never imported here
            mixer = str(scratch / "candidate.py")
            Path(mixer).write_text(source)
        config = scratch / "config.py"
        config.write_text(
            "import json\nfrom ml_collections import config_dict\n\n\n"
            "def get_config():\n    return config_dict.ConfigDict(json.loads("
            f"{json.dumps(json.dumps({**experiment, 'mixer': mixer}))}))\n"
        )
        command = [sys.executable, str(TRAIN_SCRIPT), f"--config={config}",
                   f"--workdir={workdir}", f"--coordinator={coordinator}",
                   f"--num_processes={hosts}", f"--process_id={index}"]  # fmt: skip
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=scratch, timeout=wall_seconds)  # fmt: skip
        except subprocess.TimeoutExpired as e:
            output = e.output.decode(errors="replace") if isinstance(e.output, bytes) else ""
            return {"returncode": -9, "result": None, "output": (
                f"{output}\nkilled: it ran past limits.wall_seconds={wall_seconds:g}"
            )[-_OUTPUT_TAIL:]}  # fmt: skip
        result_file = epath.Path(workdir) / "result.json"
        result = None
        if index == 0 and done.returncode == 0 and result_file.exists():
            result = json.loads(result_file.read_text())
        return {"returncode": done.returncode, "output": done.stdout[-_OUTPUT_TAIL:],
                "result": result}  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _reachable(address: str) -> None:
    """Fails at once where the head's port does not answer (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise BackendError(f"cannot join the Ray cluster at ray.address={address!r}: its head "
                           f"does not answer ({e}); start one with `ray start --head`, see the "
                           "README's 'Many machines with Ray'") from None  # fmt: skip


def _fits(node: dict[str, float], need: dict[str, float]) -> bool:
    return all(node.get(name, 0.0) >= amount for name, amount in need.items())


class RayBackend:
    """Each call of `run_attempts` is one Ray task on the cluster at `config.address`."""

    def __init__(self, config: RayConfig, workdir: Path, log: Callable[[str], None]) -> None:
        try:
            import ray
        except ImportError:
            raise BackendError(f"backend='ray' needs Ray on this machine and on every node: "
                               f"{INSTALL} (ray==2.60.0)") from None  # fmt: skip
        self.config, self.workdir, self.log, self._ray = config, workdir, log, ray
        self.storage = epath.Path(config.storage) if config.storage else epath.Path(workdir)
        need = {"CPU": config.num_cpus, "GPU": config.num_gpus, "memory": config.memory_bytes,
                **dict(config.resources)}  # fmt: skip
        self.need = {name: float(amount) for name, amount in need.items() if amount}
        _reachable(config.address)
        try:
            ray.init(address=config.address, log_to_driver=False, logging_level="WARNING",
                     configure_logging=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BackendError(f"cannot join the Ray cluster at ray.address="
                               f"{config.address!r}: {e} (start one with `ray start --head`, "
                               "see the README's 'Many machines with Ray')") from None  # fmt: skip
        try:
            nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
            if not any(_fits(n, self.need) for n in nodes):
                offered = [{k: v for k, v in n.items() if not k.startswith("node:")}
                           for n in nodes]  # fmt: skip
                raise BackendError(f"no node of the Ray cluster at {config.address!r} has what "
                                   f"one evaluation asks ({self.need}); its nodes have "
                                   f"{offered}")  # fmt: skip
        except BaseException:
            ray.shutdown()
            raise
        options: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus,
                                   "max_retries": 0, "retry_exceptions": False}  # fmt: skip
        if config.resources:
            options["resources"] = dict(config.resources)
        if config.memory_bytes:
            options["memory"] = config.memory_bytes
        self._remote = ray.remote(**options)(_on_node)
        self._host = ray.remote(**options)(_host_process)
        self._coordinator = ray.remote(num_cpus=0, max_retries=0)(_coordinator)
        resources = ray.cluster_resources()
        self.log(f"ray: {len(nodes)} node(s) at {config.address}, {resources.get('CPU', 0):g} "
                 f"CPUs, {resources.get('GPU', 0):g} GPUs; one evaluation takes {self.need}; "
                 f"sandbox folders go to {self.storage}")  # fmt: skip

    def _system_error(self, error: BaseException) -> bool:
        """A node or worker died (or lost the result), as opposed to an error raised by the
        task's own code, which is the harness's and is not retried."""
        exceptions = self._ray.exceptions
        return isinstance(error, exceptions.RayError) and not isinstance(
            error, exceptions.RayTaskError | exceptions.TaskCancelledError
        )

    def _wait(self, refs: list, cancel: threading.Event | None,
              failed: Callable[[Any], bool] = lambda _: False) -> list:  # fmt: skip
        """The results of `refs`, in order. On cancel, or once one result is `failed` (the
        others would wait for it forever), the tasks still running are killed; their results
        are None. A task that raised raises here, after the others are killed."""
        ray = self._ray
        results: dict[Any, Any] = {}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending),
                                          timeout=_POLL_SECONDS)  # fmt: skip
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                for ref in ready:
                    results[ref] = ray.get(ref)
                    if failed(results[ref]):
                        return [results.get(r) for r in refs]
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)  # kills the worker, and with it the sandbox
        return [results[r] for r in refs]

    def _multi_host(self, first: int, source: str, config: EngineerConfig, destination: str,
                    baseline: str | None, label: str, cancel: threading.Event | None
                    ) -> list[Attempt]:  # fmt: skip
        """One training run as a jax.distributed job of `config.hosts` processes, one per
        node of a placement group; see the module docstring."""
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        hosts, started = config.hosts, time.monotonic()
        bundle = dict(self.need) or {"CPU": 1.0}
        group = placement_group([bundle] * hosts, strategy="STRICT_SPREAD")
        try:
            if not self._ray.wait([group.ready()], timeout=600)[0]:
                raise InfrastructureError(f"no {hosts} distinct nodes with {bundle} each came "
                                          f"free in 10 minutes for {label}")  # fmt: skip

            def on(i: int) -> dict:
                return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, i)}

            coordinator = self._ray.get(self._coordinator.options(**on(0)).remote())
            workdir = str(epath.Path(destination) / "train")
            experiment = to_dict(config.train)
            refs = [self._host.options(name=f"verify {label} host {i}", **on(i)).remote(
                        i, hosts, coordinator, experiment, source, baseline, workdir,
                        config.limits.wall_seconds)
                    for i in range(hosts)]  # fmt: skip
            processes = self._wait(refs, cancel, failed=lambda p: p["returncode"] != 0)
        finally:
            remove_placement_group(group)
        seconds = time.monotonic() - started
        failed = [(i, p) for i, p in enumerate(processes) if p and p["returncode"] != 0]
        result = processes[0]["result"] if processes[0] else None
        if failed or result is None:
            i, p = failed[0] if failed else (0, processes[0])
            reason = f"process {i} of {hosts} exited with {p['returncode']}:\n{p['output']}"
            return [Attempt(first, code_hash(source), False, "train", reason, None, None,
                            seconds)]  # fmt: skip
        ok = result.get("status") == "completed"
        return [Attempt(first, code_hash(source), ok, None if ok else "train",
                        None if ok else result.get("stop_reason"), None, result,
                        seconds)]  # fmt: skip

    def run_attempts(self, first: int, source: str, config: EngineerConfig, folder: Path,
                     baseline: str | None, cancel: threading.Event | None
                     ) -> list[Attempt]:  # fmt: skip
        task = get_task(config.task)
        module, path = type(task).__module__, task_file(task)
        payload = pickle.dumps((first, source, config, baseline))
        destination = str(self.storage / folder.relative_to(self.workdir).as_posix())
        label = "/".join(folder.parts[-2:])  # the candidate's folder and the stage
        retry = 0
        while True:
            started = time.monotonic()
            try:
                if config.hosts > 1:
                    return self._multi_host(first, source, config, destination, baseline,
                                            label, cancel)  # fmt: skip
                ref = self._remote.options(name=f"evaluate {label}").remote(
                    payload, module if path else None, path, destination
                )
                return self._wait([ref], cancel)[0]
            except Exception as e:
                if not self._system_error(e):
                    raise
                what = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                if retry == self.config.max_retries:
                    raise InfrastructureError(
                        f"the Ray node or worker evaluating {label} died "
                        f"{retry + 1} time(s) (ray.max_retries={self.config.max_retries}); "
                        f"the last: {what}") from e  # fmt: skip
                self.log(f"ray: the node or worker evaluating {label} died after "
                         f"{time.monotonic() - started:.0f} s ({what}); it runs again, retry "
                         f"{retry + 1} of {self.config.max_retries}")  # fmt: skip
                retry += 1

    def close(self) -> None:
        self._ray.shutdown()


def make_backend(config: EvolutionConfig, workdir: Path,
                 log: Callable[[str], None]) -> LocalBackend | RayBackend:  # fmt: skip
    """The backend `config.backend` names; BackendError when it cannot run."""
    if config.backend == "ray":
        return RayBackend(config.ray, workdir, log)
    return LocalBackend()
