"""The environment record every run writes next to its results."""

from __future__ import annotations

import json
import subprocess

from asi_jax import provenance


def test_record_is_json_and_names_versions_and_devices():
    record = json.loads(json.dumps(provenance.environment_record()))
    assert record["packages"]["jax"]
    assert record["backend"] == "cpu"
    assert record["device_count"] >= 1
    assert "devices" not in provenance.environment_record(devices=False)


def test_git_revision_reports_dirty_trees(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f").write_text("a")
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    clean = provenance.git_revision(tmp_path)
    assert clean is not None and len(clean) == 40
    (tmp_path / "f").write_text("b")
    assert provenance.git_revision(tmp_path) == clean + "+dirty"


def test_git_revision_outside_a_repository_is_none(tmp_path):
    assert provenance.git_revision(tmp_path) is None
