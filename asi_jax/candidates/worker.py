"""The sandboxed worker process: loads a candidate and checks, trains or re-evaluates it.

Started only by `sandbox.run_worker` (inside bubblewrap where the machine has it). It reads
one JSON request from stdin, naming a job and the task (`asi_jax.tasks`) whose candidate it is:
    {"job": "check" | "evaluate", "task": name, "check": {...}, "train": {...} | None,
     "baseline": name | None}
    {"job": "evaluate_checkpoint", "task": name, "evaluate": {step, kv_pairs, eval_examples}}
    {"job": "export", "task": name, "train": {...}, "export": {platform, devices, eval_rows}}
        (a multi-host run's programs, see asi_jax.train.exported)
    {"job": "environment"}
plus what the parent adds (limits, the wall's paths, the response channel and its token).
While it is still its only thread it sets its resource limits and applies Landlock to itself
(`isolation.restrict`); only then does it import JAX and the rest, whose thread pools are
thereby restricted too. It then installs an audit hook (PEP 578) that for the rest of the
process refuses file access outside the Python installation, the declared data and the
working directory, sockets, process creation, ctypes and raising its resource limits, and
only then loads the candidate's source (`candidate.py` in the working directory). It sends
one response, with the layers it applied, on the parent's channel.
"""

from __future__ import annotations

import faulthandler
import json
import os

# bubblewrap's --chdir sets PWD; the environment is exactly what the parent built.
os.environ.pop("PWD", None)
# What the parent passed, before any library sets variables of its own.
INHERITED_ENVIRONMENT = tuple(sorted(os.environ))

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import resource  # noqa: E402
import site  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from asi_jax.candidates import isolation  # noqa: E402
from asi_jax.candidates.integrity import Tampering  # noqa: E402
from asi_jax.candidates.sandbox import Limits, apply_limits  # noqa: E402

CANDIDATE_FILE = "candidate.py"
TRAIN_FOLDER = "train"  # the training run's workdir, inside the candidate's folder
PROGRAM_FOLDER = "program"  # an "export" job's programs, inside the candidate's folder

_BLOCKED_PREFIXES = ("socket.", "subprocess.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn")
# Read-only lookups of the machine's own name (TensorBoard names its event files with it).
_ALLOWED_EVENTS = frozenset({"socket.gethostname"})
_BLOCKED_EVENTS = frozenset(
    {
        "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.startfile",
        "os.putenv", "os.unsetenv", "pty.spawn", "webbrowser.open", "urllib.Request",
        "http.client.connect", "resource.setrlimit", "resource.prlimit",
        # Paths are judged against the candidate's folder, the working directory.
        "os.chdir",
    }
)  # fmt: skip
_PATH_EVENTS = frozenset(
    {
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
        "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile",
        "shutil.move",
    }
)  # fmt: skip
# Reading a folder's entries: allowed where reading is (the import system lists the folders
# of a package imported late, such as a tokenizer's).
_LISTING_EVENTS = frozenset({"os.listdir", "os.scandir"})


def _read_roots() -> tuple[str, ...]:
    """Where Python and the installed packages live: readable, never writable."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    roots |= {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {str(Path(p).resolve()) for p in sys.path if p and Path(p).is_dir()}
    roots |= {"/proc/self", "/proc/cpuinfo", "/sys/devices/system/cpu", "/dev/null",
              "/dev/urandom", "/etc/localtime"}  # fmt: skip
    return tuple(sorted(str(Path(r).resolve()) for r in roots if r))


def install_audit_hook(workdir: Path, data: Sequence[str] = ()) -> None:
    """From here on the process may read Python's files, the declared `data` and its own
    folder, write only in its folder, and start no processes. Of sockets it may only create
    local (AF_UNIX) ones, which asyncio's self-pipe needs (orbax checkpoints through asyncio);
    binding, connecting, sending to an address and name lookups stay refused, so no socket
    reaches anything outside the process. Audit hooks cannot be removed."""
    own = str(workdir.resolve())
    readable = (*_read_roots(), *data, own)

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def resolve(path) -> str | None:
        if isinstance(path, int):
            return None  # an already-open descriptor
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return os.path.realpath(os.path.join(own, path))

    def hook(event: str, args: tuple) -> None:
        if event in _ALLOWED_EVENTS:
            return
        if event == "socket.__new__" and args[1] == socket.AF_UNIX:
            return
        if event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed for candidates")
        if event == "open":
            path = resolve(args[0])
            if path is None:
                return
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
            if not inside(path, (own,) if writing else readable):
                verb = "writing" if writing else "reading"
                raise PermissionError(f"sandbox: {verb} {path!r} is not allowed for candidates")
        elif event in _PATH_EVENTS or event in _LISTING_EVENTS:
            roots = readable if event in _LISTING_EVENTS else (own,)
            for arg in args[:2]:
                if isinstance(arg, (str, bytes)) and not inside(resolve(arg), roots):
                    raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")

    sys.addaudithook(hook)


def _trimmed_traceback(error: BaseException, limit: int = 2500) -> str:
    """The exception and the frames of the candidate's own file, for a reviser to act on."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if f.filename.endswith(CANDIDATE_FILE)] or frames[-3:]
    lines = [f"  {Path(f.filename).name}:{f.lineno} in {f.name}: {f.line or ''}".rstrip()
             for f in own]  # fmt: skip
    text = "\n".join([*lines, f"{type(error).__name__}: {error}"])
    return text[-limit:]


def load_candidate(workdir: Path, task) -> Any:
    """Executes the candidate's source and returns the symbol its task's contract names."""
    source = (workdir / CANDIDATE_FILE).read_text()
    namespace: dict = {"__name__": "candidate"}
    code = compile(source, str(workdir / CANDIDATE_FILE), "exec")
    exec(code, namespace)  # the audit hook is in place; the static policy ran before
    return task.load(namespace)


def handle(request: dict, workdir: Path, data: Sequence[str], layers: dict[str, Any]) -> dict:
    """Runs the request's job; every failure becomes a response naming its stage. `layers`
    is the record of the sandbox's layers, which a training run's run.json keeps."""
    import importlib

    import jax

    from asi_jax.candidates.integrity import Integrity
    from asi_jax.tasks import get_task, import_task_file

    job = request["job"]
    if request.get("task_file"):  # a task defined outside asi_jax registers on import
        import_task_file(f"task_{request['task']}", request["task_file"])
    task = None if job == "environment" else get_task(request["task"])
    # Started before the hook: a backend's drivers open device files outside the folder.
    backend = jax.default_backend()
    modules = (*task.policy.modules, *task.worker_modules) if task else ()
    for name in sorted(modules):  # what a candidate may import is loaded, and watched
        importlib.import_module(name)
    install_audit_hook(workdir, data)
    layers["audit_hook"] = True
    pinned = request.get("pinned")
    if pinned is not None and backend == "cpu":
        return {"ok": False, "stage": "sandbox", "reason": (
            f"this worker is pinned to accelerator {pinned}, but JAX found only the CPU: more "
            "workers than accelerators, or pin_devices on a host without them?")}  # fmt: skip
    if task is None:  # lets tests prove what the worker can and cannot see
        return {"environment": list(INHERITED_ENVIRONMENT), "cwd": os.getcwd()}
    integrity = Integrity()  # every module the harness uses is loaded; the candidate is not

    def judged(response: dict) -> dict:
        """`response`, unless the candidate changed the harness's modules on the way."""
        if not integrity.violations:
            with contextlib.suppress(Tampering):
                integrity.verify(f"by the end of {job}")
        if integrity.violations:
            return {"ok": False, "stage": "tampering", "reason": integrity.violations[0],
                    "check": response.get("check")}  # fmt: skip
        return response

    try:
        if request.get("baseline"):  # trusted code of ours: same checks and training
            symbol = task.baseline_symbol(request["baseline"])
        else:
            symbol = integrity.guard(load_candidate(workdir, task))
    except BaseException as e:
        return judged({"ok": False, "stage": "load", "reason": _trimmed_traceback(e)})
    if job == "evaluate_checkpoint":
        try:
            result = task.evaluate_checkpoint(symbol, workdir / TRAIN_FOLDER, request["evaluate"])
        except BaseException as e:
            return judged({"ok": False, "stage": "evaluate", "reason": _trimmed_traceback(e)})
        return judged({"ok": True, "stage": None, "reason": None, "eval": result})
    if job == "export":  # the user's own model for a multi-host run: traced, not judged
        try:
            manifest = task.export_program(symbol, request["train"], workdir / PROGRAM_FOLDER,
                                           request["export"])  # fmt: skip
        except BaseException as e:
            return judged({"ok": False, "stage": "export", "reason": _trimmed_traceback(e)})
        return judged({"ok": True, "stage": None, "reason": None, "export": manifest})
    report = task.check(symbol, request["check"], _trimmed_traceback)
    if job == "check" or not report["ok"]:
        return judged({**report, "check": report})
    structure = (report.get("structure") or {}).get("jaxpr")
    if (twin := request.get("known_structures", {}).get(structure)) is not None:
        return judged({"ok": False, "stage": "duplicate", "check": report,
                       "reason": f"its traced program is {twin}'s: a structural duplicate, "
                                 "not trained"})  # fmt: skip
    # The run records what it trained: the baseline's name, or the candidate's file.
    label = request.get("baseline") or CANDIDATE_FILE
    try:
        result = task.evaluate(symbol, request["train"], workdir / TRAIN_FOLDER, label=label,
                               isolation=layers,
                               log=lambda line: print(line, flush=True))  # fmt: skip
    except BaseException as e:
        return judged({"ok": False, "stage": "train", "reason": _trimmed_traceback(e),
                       "check": report})  # fmt: skip
    if result["status"] != "completed":
        return judged({"ok": False, "stage": "train", "reason": result["stop_reason"],
                       "check": report, "train": result})  # fmt: skip
    return judged({"ok": True, "stage": None, "reason": None, "check": report, "train": result})


def _exit_with_parent() -> None:
    """Ends this worker when the process that started it dies (a killed controller must not
    leave orphans writing into a candidate's folder that a resumed run is about to redo).
    bubblewrap does this too; this covers machines without it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _response_channel(fd: int, token: str) -> Callable[[dict], None]:
    """The one way back to the parent: the pipe it passed, each message prefixed with the
    run's token, which exists only in the request and in this closure."""
    os.set_inheritable(fd, False)  # no child of the candidate holds it

    def reply(response: dict) -> None:
        with open(fd, "w", encoding="utf-8") as channel:
            channel.write(token + json.dumps(response))

    return reply


def _wall(wall: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Applies Landlock where the parent found it (refusing to go on without it), and returns
    the record of the OS layers: the parent's namespaces (bubblewrap's name, or None) too."""
    layers: dict[str, Any] = {"namespaces": wall["namespaces"], "landlock": None}
    if wall["landlock_abi"]:
        rules = isolation.landlock_rules(workdir, wall["roots"], wall["data"])
        layers["landlock"] = isolation.restrict(rules)
    return layers


def main() -> None:
    # A fatal signal in native code prints every thread's Python stack to the log, which the
    # parent quotes in its reason.
    faulthandler.enable(all_threads=True)
    workdir = Path.cwd()
    request = json.loads(sys.stdin.read())
    reply = _response_channel(request.pop("response_fd"), request.pop("token"))
    limits = Limits(**request.pop("limits"))
    apply_limits(limits)  # before any heavy import
    wall = request.pop("wall")
    if request["job"] == "export":  # the job's whole mesh, simulated on this CPU
        os.environ["JAX_PLATFORMS"] = "cpu"
        devices = int(request["export"]["devices"])
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    try:  # still the only thread: nothing has imported JAX yet
        layers = _wall(wall, workdir)
    except OSError as e:
        reply({"ok": False, "stage": "sandbox", "reason": f"the Landlock layer failed: {e}"})
        return
    layers["rlimits"] = dataclasses.asdict(limits)
    _exit_with_parent()
    response = handle(request, workdir, wall["data"], layers)
    # The parent scales later limits from what a reference baseline's worker used.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    response["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    response["isolation"] = layers
    reply(response)


if __name__ == "__main__":
    main()
