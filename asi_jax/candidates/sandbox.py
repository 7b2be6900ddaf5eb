"""Runs candidate work in a fresh, confined subprocess: the only place candidate code executes.

The parent side. Each call starts `python -I -m asi_jax.candidates.worker` behind layers,
outermost first (see `isolation.py` for the OS layers and `isolation.detect()` for which of
them this machine has; a run's record names those applied):
- Linux namespaces through bubblewrap: the worker sees only Python, its packages, a few
  system files, the run's declared data (`read_only_paths`, read-only) and its own folder
  (the only writable place), a private /tmp, no other process, no network; killing it kills
  every process it started;
- Landlock, applied by the worker to itself before any candidate code exists: the same
  files, no TCP, no signal or abstract socket beyond the sandbox, for children and native
  code too;
- an environment rebuilt from nothing: no API keys, tokens or user variables reach it (only
  PATH, HOME/TMPDIR inside the candidate's folder, locale, and JAX's own platform flags);
- resource limits (address space, CPU seconds, file size, no core dumps), which the worker
  sets on itself first thing; a wall-clock timeout after which it is killed;
- the worker's audit hook (see `worker.py`), the last layer, not the wall.
The request goes in as JSON on stdin; the response comes back on a pipe of its own, prefixed
with a token drawn for this run, so nothing the candidate prints passes for it. A crash, hang
or memory blow-up of the worker comes back as a failed `SandboxResult` naming the limit or
signal and where it struck; it never raises in the caller, except `Cancelled` when the
caller's cancel event is set (the worker is killed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asi_jax.candidates import devices, isolation

_TAIL = 64 << 10  # characters of the worker's output kept (its log; a reviser sees less)
_MAX_RESPONSE = 16 << 20  # bytes; a response is a few kilobytes
_POLL_SECONDS = 0.25  # how often a waiting caller looks at its cancel event
# After the worker exits, how long its output may still take to drain: only a process it
# left behind (possible without the namespace layer) keeps a stream open longer.
_DRAIN_SECONDS = 2.0
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
    # The layers it ran behind: the parent's (namespaces) and, when it answered, the worker's
    # own account (Landlock, rlimits, audit hook).
    isolation: dict[str, Any] | None = None


def scrubbed_environment(workdir: Path, visible_devices: str | None = None) -> dict[str, str]:
    """The worker's whole environment. `visible_devices` pins it to accelerators (e.g. "1":
    one GPU or TPU chip per concurrent worker; on a TPU host, with the chip, bounds and port
    settings `devices.pinned_environment` gives)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
        "LANG": "C.UTF-8",
    }
    env |= {name: os.environ[name] for name in _PASSTHROUGH if name in os.environ}
    if visible_devices is not None:
        env |= devices.pinned_environment(visible_devices, tpu=devices.tpu_host())
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


_CRASH_HINTS = {
    "SIGKILL": " (killed: usually out of memory)",
    "SIGXCPU": " (CPU-time limit reached)",
    "SIGXFSZ": " (file-size limit reached)",
    "SIGSEGV": " (a crash in native code)",
    "SIGBUS": " (a crash in native code)",
    "SIGABRT": " (aborted by native code)",
    "SIGILL": " (a crash in native code)",
    "SIGFPE": " (a crash in native code)",
}
# faulthandler's report, which the worker prints on a fatal signal (see worker.main).
_FATAL = re.compile(r"^Fatal Python error: (.+)$", re.M)
_FRAME = re.compile(r'^  File "(.+)", line (\d+) in (.+)$', re.M)


def _crash_site(output: str) -> str | None:
    """Where faulthandler saw the crashing thread: its innermost frame, and the innermost
    one in the candidate's or this project's code when that is a different frame."""
    fatal = list(_FATAL.finditer(output))
    if not fatal:
        return None
    report = output[fatal[-1].end() :]
    # faulthandler marks the thread that crashed "Current thread"; the others are "Thread".
    stacks = re.findall(r"^(Current thread|Thread) .*\n((?:  File .*\n?)+)", report, re.M)
    stack = next((frames for kind, frames in stacks if kind == "Current thread"), None)
    frames = _FRAME.findall(stack or "")
    if not frames:
        return fatal[-1].group(1)
    file, line, name = frames[0]
    site = f"in {name} ({Path(file).name}:{line})"
    own = [f for f in frames if "asi_jax" in f[0] or f[0].endswith("candidate.py")]
    if own and own[0] != frames[0]:
        site += f", called from {own[0][2]} ({Path(own[0][0]).name}:{own[0][1]})"
    return site


def _describe_exit(code: int, output: str) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        text = f"worker died from {name}{_CRASH_HINTS.get(name, '')}"
        site = _crash_site(output)
        return f"{text} {site}; the Python stacks are in its log" if site else text
    return f"worker exited with status {code}"


def _worker_code(code: int, namespaces: bool) -> int:
    """The worker's own exit status. bubblewrap reports a child killed by signal N as status
    128 + N; subprocess's convention is -N."""
    if namespaces and 128 < code < 128 + signal.NSIG:
        return 128 - code
    return code


def _exchange(process: subprocess.Popen, message: bytes, channel: int, deadline: float,
              cancel: threading.Event | None) -> tuple[bytes, bytes, str | None]:  # fmt: skip
    """Writes the request, reads the worker's output (its tail) and its response until the
    worker has exited and both streams are closed or have drained. Returns (output,
    response, stop): stop is "wall" at the deadline, "cancelled" when `cancel` is set, the
    worker then still running; None otherwise."""
    output, response = bytearray(), bytearray()
    pending = memoryview(message)
    exited = None
    sinks = {process.stdout.fileno(): output, channel: response}
    with selectors.DefaultSelector() as selector:
        for fd in sinks:
            selector.register(fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        while True:
            now = time.monotonic()
            if cancel is not None and cancel.is_set():
                return bytes(output), bytes(response), "cancelled"
            if exited is None and process.poll() is not None:
                exited = now
            if exited is not None and (not selector.get_map() or now > exited + _DRAIN_SECONDS):
                return bytes(output), bytes(response), None
            if exited is None and now >= deadline:
                return bytes(output), bytes(response), "wall"
            timeout = max(0.0, min(_POLL_SECONDS, deadline - now))
            if not selector.get_map():  # the worker closed its streams but runs on
                time.sleep(timeout)
                continue
            for key, _ in selector.select(timeout):
                if key.events == selectors.EVENT_WRITE:
                    try:
                        pending = pending[os.write(key.fd, pending) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(key.fd)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                sink = sinks[key.fd]
                sink += chunk
                if not chunk or len(response) > _MAX_RESPONSE:
                    selector.unregister(key.fd)
                del output[: -4 * _TAIL]  # bytes enough for _TAIL characters


def _response(data: bytes, token: str) -> dict[str, Any] | None:
    """The worker's response: the JSON after the run's token. Anything else on the channel
    (no token, or trailing bytes) yields None."""
    _, found, body = data.decode(errors="replace").rpartition(token)
    if not found:
        return None
    try:
        response = json.loads(body)
    except json.JSONDecodeError:
        return None
    return response if isinstance(response, dict) else None


def run_worker(request: dict[str, Any], workdir: str | Path, limits: Limits, *,
               visible_devices: str | None = None, cancel: threading.Event | None = None,
               read_only_paths: Sequence[str | Path] = (),
               layers: isolation.Isolation | None = None) -> SandboxResult:  # fmt: skip
    """Runs one request (see worker.py for the tasks) in a confined worker process.

    `read_only_paths`: the run's declared data (files or folders), readable inside.
    `layers`: the OS layers to use (default: all that `isolation.detect()` found). Setting
    `cancel` kills the worker within a fraction of a second and raises `Cancelled`.
    """
    workdir = Path(workdir).resolve()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    layers = layers or isolation.detect()
    namespaces = layers.bwrap is not None
    roots, data = isolation.python_roots(), isolation.data_paths(read_only_paths)
    env = scrubbed_environment(workdir, visible_devices)
    # -I: isolated mode, so nothing in the candidate's folder can shadow an import.
    command = [sys.executable, "-I", "-m", "asi_jax.candidates.worker"]
    if namespaces:
        command = isolation.bwrap_command(layers.bwrap, command, workdir, roots, data, env)
    token = secrets.token_hex(16)
    channel, channel_end = os.pipe()
    parent_layers = {"namespaces": f"{layers.bwrap_version} ({layers.bwrap})" if namespaces
                     else None, "landlock_abi": layers.landlock_abi}  # fmt: skip
    wall = {**parent_layers, "roots": list(roots), "data": list(data)}
    message = json.dumps({**request, "limits": dataclasses.asdict(limits), "wall": wall,
                          "token": token, "response_fd": channel_end})  # fmt: skip
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(channel_end,),
            start_new_session=True,  # its own process group, killed as a whole
        )  # fmt: skip
    except BaseException:
        os.close(channel)
        raise
    finally:
        os.close(channel_end)
    with process:
        try:
            output, raw, stop = _exchange(process, message.encode(), channel,
                                          start + limits.wall_seconds, cancel)  # fmt: skip
            if stop is not None:
                # The group holds bubblewrap's own processes; the namespace's first process
                # dying takes every other one in it along.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                output += _exchange(process, b"", channel, time.monotonic(), None)[0]
        finally:
            os.close(channel)
        process.wait()
    seconds = time.monotonic() - start
    tail = output.decode(errors="replace")[-_TAIL:]
    if stop == "cancelled":
        raise Cancelled(f"cancelled; the worker in {workdir} was killed")
    if stop == "wall":
        return SandboxResult(False, None, f"timed out after {limits.wall_seconds:g} s of wall time",
                             seconds, tail, limit="wall", isolation=parent_layers)  # fmt: skip
    code = _worker_code(process.returncode, namespaces)
    response = _response(raw, token)
    if code != 0 or response is None:
        error = _describe_exit(code, tail) if code else (
            "the worker exited without sending its response (the candidate ended the process "
            "or closed its response channel)")  # fmt: skip
        return SandboxResult(False, None, error, seconds, tail, limit=_limit_hit(code),
                             isolation=parent_layers)  # fmt: skip
    cpu = response.pop("cpu_seconds", None)
    applied = response.pop("isolation", None)
    return SandboxResult(True, response, None, seconds, tail,
                         cpu_seconds=cpu if isinstance(cpu, (int, float)) else None,
                         isolation={**parent_layers, **(applied or {})})  # fmt: skip
