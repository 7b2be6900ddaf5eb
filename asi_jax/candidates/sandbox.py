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
comes back as a failed `SandboxResult`; it never raises in the caller.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULT_MARKER = "ASI_JAX_WORKER_RESULT "
_TAIL = 64 << 10  # characters of the worker's output kept (its log; a reviser sees less)
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


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    ok: bool  # the worker ran to completion and returned a response
    response: dict[str, Any] | None
    error: str | None  # why there is no response (timeout, crash, ...)
    seconds: float
    output_tail: str  # the end of the worker's stdout and stderr: its log


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
               visible_devices: str | None = None) -> SandboxResult:  # fmt: skip
    """Runs one request (see worker.py for the tasks) in a confined worker process."""
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
    message = json.dumps({**request, "limits": dataclasses.asdict(limits)})
    try:
        output, _ = process.communicate(message, timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return SandboxResult(
            False, None, f"timed out after {limits.wall_seconds:g} s of wall time",
            time.monotonic() - start, (output or "")[-_TAIL:],
        )  # fmt: skip
    seconds = time.monotonic() - start
    tail = output[-_TAIL:]
    lines = [ln for ln in output.splitlines() if ln.startswith(RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        error = _describe_exit(process.returncode) if process.returncode else "no response"
        return SandboxResult(False, None, error, seconds, tail)
    return SandboxResult(True, json.loads(lines[-1][len(RESULT_MARKER) :]), None, seconds, tail)
