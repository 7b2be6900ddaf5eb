"""The README's two commands: CI must run the documented test command, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _command_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text)
    assert match, f"README.md has no ```bash block after <!-- {marker} -->"
    command = match.group(1)
    assert "\n" not in command, f"the {marker} must be one line"
    return command


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _command_after("test-command") in ci_lines


def test_run_command_names_an_existing_script():
    command = _command_after("run-command")
    scripts = re.findall(r"scripts/\w+\.py", command)
    assert scripts, command
    for script in scripts:
        assert (ROOT / script).is_file(), script
