"""The baseline sweep: one run per (mixer, seed), finished runs read back, a summary table."""

from __future__ import annotations

import json

import pytest
from train_testing import tiny

from asi_jax.evals.sweep import format_table, run_sweep


@pytest.mark.slow
def test_sweep_trains_each_pair_once_and_tabulates(tmp_path):
    base = tiny(steps=5, log_every=5)
    rows = run_sweep(base, ["linear_attention", "deltanet"], [0, 1], tmp_path, log=lambda _: None)
    assert [(r["mixer"], r["seed"]) for r in rows] == [
        ("linear_attention", 0), ("linear_attention", 1), ("deltanet", 0), ("deltanet", 1),
    ]  # fmt: skip
    marker = tmp_path / "deltanet_seed1" / "result.json"
    saved = json.loads(marker.read_text())
    saved["eval"]["heldout"]["accuracy"] = 0.5  # a finished run is read back, not retrained
    marker.write_text(json.dumps(saved))
    again = run_sweep(base, ["deltanet"], [1], tmp_path, log=lambda _: None)
    assert again[0]["eval"]["heldout"]["accuracy"] == 0.5
    table = format_table(rows)
    assert "linear_attention" in table and "heldout acc" in table
    assert len(table.splitlines()) == 4
