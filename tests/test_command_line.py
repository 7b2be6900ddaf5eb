"""Bad command lines get one line that says what is wrong (exit status 2), and nothing runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "configs/quickstart.py"

# (arguments after the script, the one line expected on stderr after "<script>: error: ")
_EVOLVE_CASES = {
    "missing_config": (
        ["--config=configs/nope.py"],
        "--config=configs/nope.py: no such config file",
    ),
    "unknown_field": (
        [f"--config={QUICKSTART}", "--config.nosuchfield=1"],
        f"--config.nosuchfield: the config {QUICKSTART} has no field 'nosuchfield'; the config "
        "has agents, allow_llm_code_without_os_sandbox, backend, baselines, budget, check, "
        "cognition, edit_modes, explore, fitness, islands, limits, llm, max_attempts, "
        "max_proposal_tries, novelty_threshold, pin_devices, ray, reference_baseline, sampling, "
        "seed, steering, task, verify, workers",
    ),
    "misspelt_field": (
        [f"--config={QUICKSTART}", "--config.budget.candidatez=3"],
        f"--config.budget.candidatez: the config {QUICKSTART} has no field 'budget.candidatez'; "
        "did you mean --config.budget.candidates?",
    ),
    "negative_budget": (
        [f"--config={QUICKSTART}", "--config.budget.candidates=-1"],
        "config: budget.candidates must be >= 0 (0: no limit), got -1",
    ),
    "zero_limit": (
        [f"--config={QUICKSTART}", "--config.limits.wall_seconds=0"],
        "config: limits.wall_seconds must be > 0, got 0.0",
    ),
    "misspelt_folder": (
        [f"--config={QUICKSTART}", "--config.limts.wall_seconds=3"],
        f"--config.limts.wall_seconds: the config {QUICKSTART} has no field "
        "'limts.wall_seconds'; did you mean --config.limits.wall_seconds?",
    ),
    "malformed_value": (
        [f"--config={QUICKSTART}", "--config.budget.candidates=many"],
        "flag --config.budget.candidates=many: invalid literal for int() with base 10: 'many'",
    ),
}


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("case", sorted(_EVOLVE_CASES))
def test_evolve_refuses_bad_input_in_one_line(case, tmp_path):
    args, message = _EVOLVE_CASES[case]
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    done = _run("evolve.py", [*args, "--workdir=runs/x"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"evolve.py: error: {message}"]
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was created


def test_evolve_refuses_a_workdir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    done = _run("evolve.py", [f"--config={ROOT / QUICKSTART}", "--workdir=taken"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["evolve.py: error: workdir 'taken' is a file, not a folder"]
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_train_names_the_nearest_field_too(tmp_path):
    done = _run("train.py", [f"--config={ROOT / 'configs' / 'tiny_cpu.py'}",
                             "--config.train.stpes=3", "--workdir=w"], tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"train.py: error: --config.train.stpes: the config {ROOT / 'configs' / 'tiny_cpu.py'} "
        "has no field 'train.stpes'; did you mean --config.train.steps?"
    ]
