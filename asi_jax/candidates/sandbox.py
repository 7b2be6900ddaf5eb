"""Runs candidate work in a fresh, confined subprocess: the only place candidate code executes.

The parent side. Each call starts `python -m asi_jax.candidates.worker` with:
- an environment rebuilt from nothing: no API keys, tokens or user variables reach it (only
  PATH, HOME/TMPDIR inside the candidate's folder, locale, and JAX's own platform flags);
- its working directory in the candidate's folder, the only place it may write;
- resource limits (address space, CPU seconds, file size, no core dumps), which the worker
  sets on itself before importing anything and the audit hook then keeps it from raising;
  a wall-clock timeout after which its whole process group is killed;
- inside, an audit hook (see `worker.py`) that refuses files outside the Python installation
  and the candidate's folder, sockets, and new processes.
The request and the response travel as JSON. A crash, hang or memory blow-up of the worker
comes back as a failed `SandboxResult` naming the limit it hit, if any; it never raises in
the caller, except `Cancelled` when the caller's cancel event is set (the worker is killed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

RESULT_MARKER = "ASI_JAX_WORKER_RESULT "
_TAIL = 64 << 10  # characters of the worker's output kept (its log; a reviser sees less)
_POLL_SECONDS = 0.25  # how often a waiting caller looks at its cancel event
# Variables the worker may inherit: they select JAX's platform and how much accelerator
# memory one process takes (e.g. XLA_PYTHON_CLIENT_MEM_FRACTION=.45 for two workers sharing a
# GPU), nothing secret.
_PASSTHROUGH = (
    "JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS",
    "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Limits:
    wall_seconds: float = 600.0
    cpu_seconds: int = 1200
    # Address space (RLIMIT_AS); 0: none. On GPU hosts use 0: the CUDA driver reserves large
    # ranges of virtual addresses at start-up, which such a limit refuses; device memory is
    # bounded by XLA's allocator, and the checker's compiled-memory budget applies anyway.
    memory_bytes: int = 8 << 30
    file_bytes: int = 256 << 20  # largest file it may write (checkpoints included)

    def __post_init__(self):
        for name in ("wall_seconds", "cpu_seconds", "file_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"limits.{name} must be > 0, got {getattr(self, name)}")
        if self.memory_bytes < 0:
            raise ValueError(f"limits.memory_bytes must be >= 0 (0: none), got "
                             f"{self.memory_bytes}")  # fmt: skip

    def doubled(self) -> Limits:
        """Twice the time: for a retry of work that ran out of wall or CPU time."""
        return dataclasses.replace(self, wall_seconds=2 * self.wall_seconds,
                                   cpu_seconds=2 * self.cpu_seconds)  # fmt: skip


class Cancelled(Exception):
    """The caller cancelled the work; the worker was killed and returned nothing."""


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    ok: bool  # the worker ran to completion and returned a response
    response: dict[str, Any] | None
    error: str | None  # why there is no response (timeout, crash, ...)
    seconds: float
    output_tail: str  # the end of the worker's stdout and stderr: its log
    limit: str | None = None  # "wall" or "cpu" when the worker ran out of that time
    cpu_seconds: float | None = None  # the worker's own CPU time, when it reported it


def scrubbed_environment(workdir: Path, visible_devices: str | None = None) -> dict[str, str]:
    """The worker's whole environment. `visible_devices` pins it to accelerators (e.g. "1":
    one GPU or TPU chip per concurrent worker)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
        "LANG": "C.UTF-8",
    }
    env |= {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
    if visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = env["TPU_VISIBLE_CHIPS"] = visible_devices
    return env


def apply_limits(limits: Limits) -> None:
    """Called by the worker on itself first thing. (Not a preexec_fn: running Python between
    fork and exec in a multithreaded JAX parent can deadlock.)"""
    if limits.memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _limit_hit(code: int) -> str | None:
    """The limit a worker that exited with `code` ran out of: "cpu" for SIGXCPU, which the
    kernel sends at the soft CPU-time limit; None otherwise."""
    return "cpu" if code == -signal.SIGXCPU else None


def _describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = {
            "SIGKILL": " (killed: usually out of memory)",
            "SIGXCPU": " (CPU-time limit reached)",
            "SIGXFSZ": " (file-size limit reached)",
            "SIGSEGV": " (crashed)",
        }.get(name, "")
        return f"worker died from {name}{hint}"
    return f"worker exited with status {code}"


def run_worker(request: dict[str, Any], workdir: str | Path, limits: Limits, *,
               visible_devices: str | None = None,
               cancel: threading.Event | None = None) -> SandboxResult:  # fmt: skip
    """Runs one request (see worker.py for the tasks) in a confined worker process. Setting
    `cancel` kills the worker within a fraction of a second and raises `Cancelled`."""
    workdir = Path(workdir).resolve()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    process = subprocess.Popen(
        # -I: isolated mode, so nothing in the candidate's folder can shadow an import.
        [sys.executable, "-I", "-m", "asi_jax.candidates.worker"],
        cwd=workdir,
        env=scrubbed_environment(workdir, visible_devices),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, killed as a whole on timeout
    )
    message: str | None = json.dumps({**request, "limits": dataclasses.asdict(limits)})
    deadline = start + limits.wall_seconds
    while True:
        try:
            # A timed-out communicate keeps what it read; the next call goes on from there.
            output, _ = process.communicate(
                message, timeout=max(0.0, min(_POLL_SECONDS, deadline - time.monotonic()))
            )
            break
        except subprocess.TimeoutExpired:
            message = None
            cancelled = cancel is not None and cancel.is_set()
            if not cancelled and time.monotonic() < deadline:
                continue
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            if cancelled:
                raise Cancelled(f"cancelled; the worker in {workdir} was killed") from None
            return SandboxResult(
                False, None, f"timed out after {limits.wall_seconds:g} s of wall time",
                time.monotonic() - start, (output or "")[-_TAIL:], limit="wall",
            )  # fmt: skip
    seconds = time.monotonic() - start
    tail = output[-_TAIL:]
    lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        code = process.returncode
        error = _describe_exit(code) if code else "no response"
        return SandboxResult(False, None, error, seconds, tail, limit=_limit_hit(code))
    response = json.loads(lines[-1][len(RESULT_MARKER) :])
    cpu = response.pop("cpu_seconds", None)
    return SandboxResult(True, response, None, seconds, tail,
                         cpu_seconds=cpu if isinstance(cpu, (int, float)) else None)  # fmt: skip
