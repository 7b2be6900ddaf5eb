"""Runs the static policy and the checker on one candidate file; prints the verdict as JSON.

    python scripts/check_candidate.py --candidate=tests/candidates/good_gated_delta.py

Exit status: 0 accepted, 1 rejected (the JSON says at which stage and why), 2 usage error.
"""

from __future__ import annotations

import sys
import tempfile

from absl import flags

from asi_jax import command_line
from asi_jax.candidates.cli import check_file, dumps
from asi_jax.candidates.engineer import EngineerConfig
from asi_jax.candidates.sandbox import Limits
from asi_jax.tasks.linear_attention.checker import CheckConfig

_CANDIDATE = flags.DEFINE_string("candidate", None, "Path of the candidate's .py file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the sandbox (default: a temp dir).")
_D_MODEL = flags.DEFINE_integer("d_model", 64, "Width the mixer is checked at.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "Heads the mixer is checked with.")
_REFERENCE = flags.DEFINE_string("reference", "deltanet", "Mixer whose size sets the budget.")
_BUDGET = flags.DEFINE_float("param_budget_ratio", 1.5, "Parameter budget, x the baseline's.")
_TIMEOUT = flags.DEFINE_float("timeout", 300.0, "Wall-clock limit of the sandbox, seconds.")


def main(argv: list[str]) -> None:
    if len(argv) > 1 or not _CANDIDATE.value:
        raise command_line.UsageError("usage: check_candidate.py --candidate=PATH [--workdir=DIR]")
    config = EngineerConfig(
        check=CheckConfig(
            d_model=_D_MODEL.value, num_heads=_NUM_HEADS.value, param_budget_ratio=_BUDGET.value
        ),
        limits=Limits(wall_seconds=_TIMEOUT.value),
        reference=_REFERENCE.value,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="asi_jax_check_") as tmp:
            verdict = check_file(_CANDIDATE.value, _WORKDIR.value or tmp, config)
    except (FileNotFoundError, ValueError) as e:
        raise command_line.UsageError(str(e)) from e
    print(dumps(verdict))
    sys.exit(0 if verdict["ok"] else 1)


if __name__ == "__main__":
    command_line.run(main)
