"""A workdir is held by one process at a time; the kernel frees it when the holder dies."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from asi_jax.workdir import LOCK_FILE, WorkdirError, hold, prepare

_HOLDER = """
import sys, time
from asi_jax.workdir import hold
with hold(sys.argv[1], "test run"):
    print("held", flush=True)
    time.sleep(600)
"""


def _start_holder(workdir) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_the_first_ones_details(tmp_path):
    holder = _start_holder(tmp_path / "run")
    try:
        refused = rf"in use by another test run \(pid {holder.pid} "
        with pytest.raises(WorkdirError, match=refused), hold(tmp_path / "run", "test run"):
            pass
        info = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert info["pid"] == holder.pid  # the refused start did not overwrite it
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_of_the_holder_frees_the_workdir(tmp_path):
    holder = _start_holder(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with hold(tmp_path / "run", "test run") as path:  # nothing to clean up by hand
        assert json.loads((path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_hold_is_exclusive_within_one_process_too_and_released_after(tmp_path):
    refused = pytest.raises(WorkdirError, match=f"pid {os.getpid()}")
    with hold(tmp_path, "test run"), refused, hold(tmp_path, "test run"):
        pass
    with hold(tmp_path, "test run"):
        pass


def test_prepare_makes_missing_folders_absolute_and_refuses_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = prepare("runs/a/b")
    assert path == tmp_path / "runs" / "a" / "b" and path.is_dir() and path.is_absolute()
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkdirError, match=r"^workdir 'file' is a file, not a folder$"):
        prepare("file")
    with pytest.raises(WorkdirError, match=r"^cannot create workdir 'file/sub': Not a directory$"):
        prepare("file/sub")


def test_the_lock_file_does_not_reach_child_processes(tmp_path):
    """A process started by the holder (a sandboxed worker) must not keep the workdir held
    after the holder is gone."""
    with hold(tmp_path, "test run"):
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        time.sleep(0.1)
        with hold(tmp_path, "test run"):
            pass
    finally:
        child.kill()
        child.wait()
