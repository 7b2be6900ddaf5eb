"""The sandbox's OS wall, proven by its effects. Candidates are sent straight to the worker (no
static policy) and try every way out they can; what they aimed at must not have happened: no
file outside their folder, no process left alive, no signal delivered to the controller, no
connection reaching a listener, no secret in any output. Each layer is also tried alone.
Also: the layers are active on this machine, the response cannot be forged, a native crash
names where it struck, and the run's declared data is readable (and only it)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest
from train_testing import tiny_dict

from asi_jax.candidates import isolation
from asi_jax.candidates.sandbox import Cancelled, Limits, run_worker
from asi_jax.tasks.linear_attention.checker import CheckConfig

ROOT = Path(__file__).resolve().parents[1]
CHECK = dataclasses.asdict(CheckConfig(d_model=32, num_heads=2, seq_lens=(1, 19),
                                       cost_seq_len=128))  # fmt: skip
MODES = ("full", "landlock_only", "namespaces_only")


def _layers(mode: str) -> isolation.Isolation:
    found = isolation.detect()
    return {"full": found, "landlock_only": dataclasses.replace(found, bwrap=None),
            "namespaces_only": dataclasses.replace(found, landlock_abi=0)}[mode]  # fmt: skip


def _candidate(init: str) -> str:
    """A Mixer whose __init__ runs `init` (a function body taking no arguments)."""
    body = "".join(f"        {line}\n" for line in init.strip("\n").splitlines())
    return ("from flax import nnx\n\n\nclass Mixer(nnx.Module):\n"
            f"    def __init__(self, d, h, *, rngs):\n{body}\n"
            "    def __call__(self, x):\n        return x\n")  # fmt: skip


def _processes(marker: str, folder: Path) -> list[int]:
    """Live processes whose command line or environment names `marker`, or that run in or
    below `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has already died
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            if marker.encode() in text or Path(proc / "cwd").resolve().is_relative_to(folder):
                found.append(int(proc.name))
    return found


# --- one hostile candidate, run once per combination of layers ------------------------------

# Run in the worker with its audit hook in place: what the hook does not see (native code,
# process creation through _posixsubprocess, pidfds), then a child Python without the hook.
_HOSTILE = r"""
import json, os, signal, sys, time
import _posixsubprocess, _sqlite3
import jax, jax.numpy as jnp
p = json.loads(open("params.json").read())
report = {}
def attempt(name, action):
    try:
        report[name] = "done: " + repr(action())[:4000]
    except BaseException as e:
        report[name] = f"refused: {type(e).__name__}: {e}"[:300]
def spawn(argv):
    r, w = os.pipe()
    pid = _posixsubprocess.fork_exec([a.encode() for a in argv], [argv[0].encode()], True, (w,),
        None, None, -1, -1, -1, -1, -1, -1, r, w, True, True, -1, None, None, None, -1, None,
        False)
    os.close(w)
    error = os.read(r, 1000)
    os.close(r)
    if error:
        raise OSError(error.decode(errors="replace"))
    return pid
attempt("environment", lambda: dict(os.environ))
attempt("xla_dump", lambda: jax.jit(lambda x: x * 2).lower(jnp.ones(3)).compile(
    compiler_options={"xla_dump_to": p["outside"] + "/xla_dump"}))
def sqlite():
    db = _sqlite3.connect(p["outside"] + "/db.sqlite")
    db.execute("create table t (x)")
    db.commit()
attempt("sqlite", sqlite)
attempt("pidfd", lambda: signal.pidfd_send_signal(os.pidfd_open(p["controller_pid"]),
                                                  signal.SIGUSR1))
attempt("shell", lambda: spawn(["/bin/sh", "-c",
                                f"echo x > {p['outside']}/sh_marker; sleep 600 # {p['marker']}"]))
def child():
    pid = spawn([sys.executable, "-c", p["child"], json.dumps(p), p["marker"]])
    return os.waitpid(pid, 0)
attempt("child", child)
print("HOSTILE " + json.dumps(report), flush=True)
open("report.json", "w").write(json.dumps(report))
raise RuntimeError("hostile candidate done")
"""

# Run by the child, a Python of its own without the audit hook: only the OS layers hold it.
_CHILD = r"""
import json, os, signal, socket, sys, time
p = json.loads(sys.argv[1])
report = {}
def attempt(name, action):
    try:
        report[name] = "done: " + repr(action())[:4000]
    except BaseException as e:
        report[name] = f"refused: {type(e).__name__}: {e}"[:300]
def read(path):
    with open(path, "rb") as f:
        return f.read(1 << 16).decode(errors="replace")
def write(path):
    with open(path, "w") as f:
        f.write("x")
attempt("environment", lambda: dict(os.environ))
attempt("secret_file", lambda: read(p["secret_file"]))
attempt("dotdot", lambda: read(os.getcwd() + "/../secret.txt"))
for pid in {p["controller_pid"], os.getppid(), 1}:
    attempt(f"environ_{pid}", lambda pid=pid: read(f"/proc/{pid}/environ"))
def chdir_read():
    os.chdir("/")
    return read(p["secret_file"].lstrip("/"))
attempt("chdir_read", chdir_read)
def chdir_write():
    os.chdir(p["outside"])
    write("chdir_marker")
attempt("chdir_write", chdir_write)
os.chdir(p["folder"])
def symlink():
    os.symlink(p["secret_file"], "link")
    return read("link")
attempt("symlink", symlink)
def hardlink():
    os.link(p["secret_file"], "hard")
    return read("hard")
attempt("hardlink", hardlink)
attempt("write_outside", lambda: write(p["outside"] + "/child_marker"))
attempt("write_project", lambda: write(p["project_file"]))
attempt("write_venv", lambda: write(p["venv_file"]))
attempt("kill", lambda: os.kill(p["controller_pid"], signal.SIGUSR1))
attempt("tcp", lambda: socket.create_connection(("127.0.0.1", p["tcp_port"]), 5).send(b"x"))
def abstract():
    s = socket.socket(socket.AF_UNIX)
    s.connect("\0" + p["abstract_name"])
    s.send(b"x")
attempt("abstract_socket", abstract)
if os.fork() == 0:  # a detached process that outlives the worker, then acts
    os.setsid()
    if os.fork() == 0:
        time.sleep(max(0.0, p["late_at"] - time.time()))
        for late in (lambda: write(p["outside"] + "/late_marker"),
                     lambda: os.kill(p["controller_pid"], signal.SIGUSR1)):
            try:
                late()
            except OSError:
                pass
        time.sleep(600)
    os._exit(0)
print("CHILD " + json.dumps(report), flush=True)
write(p["folder"] + "/child_done")
with open(p["folder"] + "/child_report.json", "w") as f:
    json.dump(report, f)
"""

# The controller: a process of its own, started with the secret in its environment (so that
# /proc/<pid>/environ holds it), counting the SIGUSR1s it receives until the late deadline.
_CONTROLLER = r"""
import dataclasses, json, os, signal, sys, time
from asi_jax.candidates import isolation
from asi_jax.candidates.sandbox import Limits, run_worker
args = json.loads(sys.argv[1])
received = []
signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
params_file = os.path.join(args["folder"], "params.json")
params = json.loads(open(params_file).read())
params["controller_pid"] = os.getpid()
open(params_file, "w").write(json.dumps(params))
found = isolation.detect()
layers = {"full": found, "landlock_only": dataclasses.replace(found, bwrap=None),
          "namespaces_only": dataclasses.replace(found, landlock_abi=0)}[args["mode"]]
request = {"job": "check", "task": "linear_attention", "check": args["check"], "train": None}
result = run_worker(request, args["folder"], Limits(wall_seconds=240), layers=layers)
time.sleep(max(0.0, params["late_at"] + 3 - time.time()))
with open(args["out"], "w") as f:
    json.dump({"result": dataclasses.asdict(result), "sigusr1": len(received)}, f)
"""


@dataclasses.dataclass
class Hostile:
    mode: str
    base: Path
    folder: Path
    outside: Path
    params: dict
    result: dict  # the SandboxResult, as its fields
    sigusr1: int  # SIGUSR1s the controller received
    survivors: list[int]  # processes of the sandbox alive after it ended (then killed)
    planted: list[str]  # files it wrote into the project or the venv (then removed)
    connections: dict[str, bool]  # listener -> whether anything connected
    env_secret: str
    file_secret: str

    def reports(self) -> dict[str, dict]:
        found = {}
        for name in ("report.json", "child_report.json"):
            with contextlib.suppress(OSError):
                found[name] = json.loads((self.folder / name).read_text())
        return found


def _listeners() -> tuple[socket.socket, socket.socket, str]:
    tcp = socket.create_server(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX)
    name = f"asi-jax-wall-{secrets.token_hex(6)}"
    abstract.bind("\0" + name)
    abstract.listen()
    for s in (tcp, abstract):
        s.setblocking(False)
    return tcp, abstract, name


def _connected(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def _hostile(mode: str, base: Path) -> Hostile:
    """Runs the hostile candidate under `mode`'s layers from a controller of its own; collects
    the effects, then kills any process it left."""
    folder, outside = base / "folder", base / "outside"
    folder.mkdir()
    outside.mkdir()
    env_secret, file_secret = f"sk-test-{secrets.token_hex(12)}", f"file-{secrets.token_hex(12)}"
    (base / "secret.txt").write_text(file_secret)
    tcp, abstract, abstract_name = _listeners()
    marker = f"asi-jax-hostile-{secrets.token_hex(6)}"
    params = {
        "folder": str(folder), "outside": str(outside), "secret_file": str(base / "secret.txt"),
        "project_file": str(ROOT / "asi_jax" / f"pwned_{marker}.py"),
        "venv_file": str(Path(sysconfig.get_path("purelib")) / f"pwned_{marker}.pth"),
        "tcp_port": tcp.getsockname()[1], "abstract_name": abstract_name, "marker": marker,
        "late_at": time.time() + 15, "child": _CHILD,
    }  # fmt: skip
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "candidate.py").write_text(_candidate(_HOSTILE))
    args = {"mode": mode, "folder": str(folder), "check": CHECK, "out": str(base / "out.json")}
    env = {**os.environ, "GEMINI_API_KEY": env_secret}
    try:
        subprocess.run([sys.executable, "-c", _CONTROLLER, json.dumps(args)], env=env,
                       check=True, timeout=400)  # fmt: skip
        connections = {"tcp": _connected(tcp), "abstract": _connected(abstract)}
    finally:
        tcp.close()
        abstract.close()
        survivors = _processes(marker, base)
        for pid in survivors:  # without namespaces, a detached process outlives the worker
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        planted = [p for p in (params["project_file"], params["venv_file"]) if Path(p).exists()]
        for path in planted:  # a broken wall must not leave them behind
            Path(path).unlink()
    outcome = json.loads((base / "out.json").read_text())
    return Hostile(mode, base, folder, outside, json.loads((folder / "params.json").read_text()),
                   outcome["result"], outcome["sigusr1"], survivors, planted, connections,
                   env_secret, file_secret)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_a_hostile_candidate_achieves_nothing(mode, tmp_path):
    """Its attempts, from the worker and from a child Python without the audit hook: a shell,
    chdir + relative paths, ../, symlinks, hardlinks, /proc/<pid>/environ, XLA's dump, SQLite,
    pidfd and kill signals, TCP, an abstract socket, writes into the project and the venv, a
    setsid double-forked process acting after the worker ended. Each effect is checked."""
    run = _hostile(mode, tmp_path.resolve())
    result = run.result
    # Every attempt ran, or the checks below would prove nothing.
    assert result["ok"], (result["error"], result["output_tail"][-3000:])
    assert "hostile candidate done" in result["response"]["reason"]
    reports = run.reports()
    assert set(reports["report.json"]) == {"environment", "xla_dump", "sqlite", "pidfd", "shell",
                                           "child"}  # fmt: skip
    assert (run.folder / "child_done").exists(), reports  # the hook-free child ran to the end
    refused = {"secret_file", "dotdot", "chdir_read", "chdir_write", "symlink", "hardlink",
               "write_outside", "write_project", "write_venv", "kill", "tcp",
               "abstract_socket"}  # fmt: skip
    if mode == "namespaces_only":  # the private /tmp takes writes aimed at the host's /tmp
        refused -= {"chdir_write", "write_outside"}
    for name in sorted(refused):
        assert reports["child_report.json"][name].startswith("refused"), (name, reports)

    # Nothing written outside the folder.
    assert sorted(p.name for p in run.outside.iterdir()) == []
    assert sorted(p.name for p in run.base.iterdir()) == ["folder", "out.json", "outside",
                                                          "secret.txt"]  # fmt: skip
    assert run.planted == []  # the project and the venv
    # No process outlives the worker: killing a PID namespace's first process kills all in it.
    # (Without namespaces the detached one does, still under Landlock: nothing above or below.)
    if mode != "landlock_only":
        assert run.survivors == []
    # The controller was never signalled; no listener outside was reached.
    assert run.sigusr1 == 0
    assert run.connections == {"tcp": False, "abstract": False}
    # No secret in the result, the worker's log (where the candidate printed what it got) or
    # any file it left in its folder.
    assert "CHILD " in result["output_tail"]
    texts = [json.dumps(result)]
    texts += [p.read_bytes().decode(errors="replace") for p in run.folder.rglob("*")
              if p.is_file() and not p.is_symlink()]  # fmt: skip
    for secret in (run.env_secret, run.file_secret):
        assert not [t for t in texts if secret in t]


# --- the layers, the channel, crashes, data ------------------------------------------------


def test_os_layers_are_active():
    """CI must run behind both OS layers; where this fails, the message says what is missing
    and how to get it."""
    found = isolation.detect()
    assert found.complete, found.describe()
    assert found.bwrap is not None and found.landlock_abi >= isolation.MIN_LANDLOCK_ABI


def test_a_worker_reports_the_layers_it_applied(tmp_path):
    outcome = run_worker({"job": "environment"}, tmp_path, Limits(wall_seconds=120))
    assert outcome.ok, (outcome.error, outcome.output_tail)
    layers = outcome.isolation
    assert layers["namespaces"] and layers["namespaces"].startswith("bubblewrap")
    assert layers["landlock"]["abi"] == isolation.detect().landlock_abi
    assert layers["landlock"]["scoped"] == ["abstract_unix_socket", "signal"]
    assert layers["landlock"]["tcp"] == "bind and connect denied"
    assert str(tmp_path.resolve()) in layers["landlock"]["granted"]
    assert layers["rlimits"]["memory_bytes"] == Limits().memory_bytes and layers["audit_hook"]


def test_landlock_refuses_a_process_that_already_has_threads(tmp_path):
    """restrict_self binds only the calling thread and its later children: a thread started
    before would stay free, so the worker must be alone when it restricts itself."""
    code = ("import threading, time\nfrom asi_jax.candidates import isolation\n"
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "try:\n    isolation.restrict([])\nexcept OSError as e:\n    print(e)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)  # fmt: skip
    assert "before any thread exists; 2 running" in done.stdout, done.stderr


def test_a_forged_response_is_not_taken_for_the_real_one(tmp_path):
    """The candidate prints a success line in the old marker's format and writes forged
    responses into every pipe it holds; the parent still reports what really happened."""
    forged = json.dumps({"ok": True, "stage": None, "reason": None, "figures": {"params": 1}})
    init = f"""
import os, stat
print("ASI_JAX_WORKER_RESULT " + {forged!r}, flush=True)
for fd in range(3, 256):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, ({forged!r} + "\\n").encode())
    except OSError:
        pass
raise ValueError("the real outcome")
"""
    (tmp_path / "candidate.py").write_text(_candidate(init))
    request = {"job": "check", "task": "linear_attention", "check": CHECK, "train": None}
    outcome = run_worker(request, tmp_path, Limits(wall_seconds=120))
    assert outcome.ok, (outcome.error, outcome.output_tail[-2000:])
    assert outcome.response["ok"] is False and outcome.response["stage"] == "instantiate"
    assert "ValueError: the real outcome" in outcome.response["reason"]


def test_a_native_crash_names_its_signal_and_where_it_struck(tmp_path):
    init = "import faulthandler\nfaulthandler._sigsegv()  # SIGSEGV, as from native code"
    (tmp_path / "candidate.py").write_text(_candidate(init))
    request = {"job": "check", "task": "linear_attention", "check": CHECK, "train": None}
    outcome = run_worker(request, tmp_path, Limits(wall_seconds=120))
    assert not outcome.ok and outcome.limit is None
    assert outcome.error.startswith(
        "worker died from SIGSEGV (a crash in native code) in __init__ (candidate.py:7)"
    ), outcome.error
    assert "Fatal Python error: Segmentation fault" in outcome.output_tail


def test_a_detached_process_dies_when_the_worker_is_cancelled(tmp_path):
    """The candidate starts a setsid Python that would write outside later, then hangs; the
    caller cancels: the worker and the detached process are gone, nothing is written."""
    folder, late = tmp_path / "folder", tmp_path / "late_marker"
    marker = f"asi-jax-detached-{secrets.token_hex(6)}"
    child = (f"import time\ntime.sleep(8)\nopen({str(late)!r}, 'w').write('x')  # {marker}\n"
             "time.sleep(600)\n")  # fmt: skip
    init = f"""
import os, sys, time, _posixsubprocess
r, w = os.pipe()
_posixsubprocess.fork_exec([sys.executable.encode(), b"-c", {child!r}.encode()],
    [sys.executable.encode()], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w, True, True,
    -1, None, None, None, -1, None, False)
open("started", "w").close()
for _ in iter(int, 1):
    time.sleep(1)
"""
    folder.mkdir()
    (folder / "candidate.py").write_text(_candidate(init))
    cancel = threading.Event()

    def cancel_once_started() -> None:
        while not (folder / "started").exists() and not cancel.is_set():
            time.sleep(0.1)
        time.sleep(0.5)
        cancel.set()

    watcher = threading.Thread(target=cancel_once_started)
    watcher.start()
    request = {"job": "check", "task": "linear_attention", "check": CHECK, "train": None}
    try:
        with pytest.raises(Cancelled):
            run_worker(request, folder, Limits(wall_seconds=240), cancel=cancel)
    finally:
        cancel.set()
        watcher.join()
    assert (folder / "started").exists()  # the detached process was started
    assert _processes(marker, folder) == []
    time.sleep(10)  # past the moment it would have written
    assert not late.exists()


def test_the_runs_declared_data_is_readable_and_nothing_beside_it(tmp_path):
    """DeltaNet trains in the sandbox on the user's corpus and tokenizer, declared; a file
    beside them, undeclared, is not there at all."""
    import tokenizers

    data = tmp_path / "user_data"
    data.mkdir()
    text, vocab, beside = data / "corpus.txt", data / "tok.json", data / "notes.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 300)
    beside.write_text("not declared")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.train(
        [str(text)], tokenizers.trainers.BpeTrainer(vocab_size=64, special_tokens=["[UNK]"])
    )
    tokenizer.save(str(vocab))
    config = tiny_dict(steps=2, log_every=1)
    config["model"]["vocab_size"] = tokenizer.get_vocab_size()
    config["data"] |= {"files": [str(text)], "tokenizer": str(vocab), "seq_len": 16,
                       "heldout_fraction": 0.2}  # fmt: skip
    check = dataclasses.asdict(CheckConfig(d_model=32, num_heads=2, batch_sizes=(1,),
                                           seq_lens=(5,), causal_seq_len=8,
                                           cost_seq_len=16))  # fmt: skip
    request = {
        "job": "evaluate",
        "task": "linear_attention",
        "check": check,
        "train": config,
        "baseline": "deltanet",
    }
    outcome = run_worker(request, tmp_path / "trained", Limits(wall_seconds=300),
                         read_only_paths=[text, vocab])  # fmt: skip
    assert outcome.ok, (outcome.error, outcome.output_tail[-3000:])
    assert outcome.response["ok"], outcome.response["reason"]
    assert outcome.response["train"]["status"] == "completed"
    run = json.loads((tmp_path / "trained" / "train" / "run.json").read_text())
    assert {str(text), str(vocab)} <= set(run["isolation"]["landlock"]["granted"])

    init = f"import os\nraise ValueError(os.path.exists({str(beside)!r}))"
    (tmp_path / "reader").mkdir()
    (tmp_path / "reader" / "candidate.py").write_text(_candidate(init))
    request = {"job": "check", "task": "linear_attention", "check": check, "train": None}
    outcome = run_worker(request, tmp_path / "reader", Limits(wall_seconds=120),
                         read_only_paths=[text, vocab])  # fmt: skip
    assert "ValueError: False" in outcome.response["reason"], outcome.response["reason"]


_GLA_AND_DELTA_RULE = """
import jax
import jax.numpy as jnp
from flax import nnx

import pallas_kernels


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.gk = nnx.Linear(d_model, d_model, rngs=rngs)
        self.beta = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)

    def __call__(self, x):
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = (z.reshape(b, t, h, d // h) for z in jnp.split(self.qkv(x), 3, axis=-1))
        k = k / jnp.sqrt(jnp.sum(k * k, -1, keepdims=True) + 1e-6)
        gk = jax.nn.log_sigmoid(self.gk(x) + 4.0).reshape(b, t, h, d // h)
        o1, _ = pallas_kernels.gla(q, k, v, gk, impl="chunk")
        o2, _ = pallas_kernels.delta_rule(q, k, v, jax.nn.sigmoid(self.beta(x)))
        return self.out((o1 + o2).reshape(b, t, d))
"""


@pytest.mark.slow  # the default check: forward and backward compiled up to T = 1024
def test_gla_and_delta_rule_pass_the_default_check_in_the_sandbox(tmp_path):
    """This mixer once killed the worker with SIGSEGV: jaxlib 0.10.2's XLA:CPU crash in the
    GLA chunk's gradient (see tests/data/xla_cpu_gla_crash), outside the sandbox too and
    with no address-space limit as well; no sandbox limit was involved."""
    (tmp_path / "candidate.py").write_text(_GLA_AND_DELTA_RULE)
    request = {
        "job": "check",
        "task": "linear_attention",
        "check": dataclasses.asdict(CheckConfig()),
        "train": None,
    }
    outcome = run_worker(request, tmp_path, Limits(wall_seconds=1800, cpu_seconds=3600))
    assert outcome.ok, (outcome.error, outcome.output_tail[-3000:])
    assert outcome.response["ok"], (outcome.response["stage"], outcome.response["reason"])
