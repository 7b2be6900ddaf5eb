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


def test_ci_installs_chromium_and_its_absence_fails_the_browser_tests():
    """The test command installs Debian's chromium before the suite where it is missing (as
    root); CI sets CI=true, under which the browser tests fail instead of skipping."""
    command = _command_after("test-command")
    install = command.index("apt-get install -y -qq chromium")
    assert command.startswith("(command -v chromium ||") and install < command.index("pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines.index("export CI=true") < ci_lines.index(command)


def test_run_command_names_an_existing_script():
    command = _command_after("run-command")
    scripts = re.findall(r"scripts/\w+\.py", command)
    assert scripts, command
    for script in scripts:
        assert (ROOT / script).is_file(), script


def test_every_config_override_in_the_readme_names_a_field_its_config_has():
    """ml_collections refuses an override of a field the config lacks: each documented
    `--config.a.b=value` must exist in the config file that command loads."""
    from asi_jax.command_line import _config_overrides, _dotted_fields, _load_config_file

    commands = re.findall(r"^\.venv/bin/python scripts/\w+\.py .+$",
                          (ROOT / "README.md").read_text(), re.MULTILINE)  # fmt: skip
    checked = 0
    for command in commands:
        config, fields = _config_overrides(command.split(), "config")
        if not config:
            continue
        known = set(_dotted_fields(_load_config_file(str(ROOT / config))))
        assert not set(fields) - known, command
        checked += len(fields)
    assert checked >= 8
