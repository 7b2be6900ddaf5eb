"""Trains several mixers on one config, same seeds and steps, and tabulates their results.

This is how baselines are compared (and how a claim that one design beats another is
checked): identical data, steps, optimizer and seeds; only the mixer changes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asi_jax.provenance import environment_record
from asi_jax.train.config import ExperimentConfig
from asi_jax.train.trainer import train


def run_sweep(
    base: ExperimentConfig,
    mixers: Sequence[str],
    seeds: Sequence[int],
    workdir: str | Path,
    *,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One row per (mixer, seed): its result.json plus the mixer and seed, also written with
    the table and the environment to `workdir/sweep.json`. Runs already finished in
    `workdir` are read back, not retrained."""
    rows = []
    for mixer in mixers:
        for seed in seeds:
            config = dataclasses.replace(base, mixer=mixer, seed=seed)
            run_dir = Path(workdir) / f"{mixer}_seed{seed}"
            result_file = run_dir / "result.json"
            if result_file.exists():
                result = json.loads(result_file.read_text())
            else:
                log(f"training {mixer} (seed {seed})")
                result = train(config, run_dir, log=lambda line: None)
            rows.append({"mixer": mixer, "seed": seed, **result})
            log(_summary(rows[-1]))
    (Path(workdir) / "sweep.json").write_text(json.dumps(
        {"environment": environment_record(), "table": format_table(rows), "runs": rows},
        indent=2) + "\n")  # fmt: skip
    return rows


def _summary(row: dict) -> str:
    evals = ", ".join(
        f"{k} acc {v['accuracy']:.3f}"
        for k, v in row["eval"].items()
        if v.get("accuracy") is not None
    )  # (downstream perplexities only: None)
    return f"{row['mixer']} seed {row['seed']}: {row['status']}, {evals}"


def format_table(rows: Sequence[dict]) -> str:
    """Mean held-out accuracy and loss per mixer and eval set, with the spread over seeds."""
    by_mixer: dict[str, list[dict]] = {}
    for row in rows:
        by_mixer.setdefault(row["mixer"], []).append(row)
    sets = sorted({name for row in rows for name, v in row["eval"].items()
                   if v.get("accuracy") is not None})  # fmt: skip
    header = f"{'mixer':<16}{'params':>9}" + "".join(f"{s + ' acc':>16}" for s in sets)
    lines = [header + f"{'loss':>8}", "-" * (len(header) + 8)]
    for mixer, runs in by_mixer.items():
        cells = []
        for name in sets:
            accs = [r["eval"][name]["accuracy"] for r in runs
                    if (r["eval"].get(name) or {}).get("accuracy") is not None]  # fmt: skip
            spread = max(accs) - min(accs) if len(accs) > 1 else 0.0
            cells.append(f"{sum(accs) / len(accs):>10.3f} ±{spread / 2:.2f}")
        loss = sum(r["eval"]["heldout"]["loss"] for r in runs) / len(runs)
        lines.append(
            f"{mixer:<16}{runs[0]['params']['total']:>9,}" + "".join(cells) + f"{loss:>8.3f}"
        )
    return "\n".join(lines)
