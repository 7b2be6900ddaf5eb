"""Replays a recorded evolution run with no network and checks it decides the same.

    python scripts/replay.py --recorded=runs/asi_arch --workdir=runs/asi_arch_replay

The new run takes the recorded run's config and answers every language-model request with
the recorded reply (asi_jax/evolution/replay.py); candidates are trained again. Prints the
differences, if any. Exit status: 0 the same decisions, 1 they differ (or the replay
diverged), 2 bad arguments.
"""

from __future__ import annotations

import json

from absl import flags

from asi_jax import command_line
from asi_jax.agents.replay import ReplayDiverged
from asi_jax.evolution.controller import EvolutionError
from asi_jax.evolution.replay import replay_run

_RECORDED = flags.DEFINE_string("recorded", None, "The recorded run's workdir.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A new workdir for the replayed run.")
flags.mark_flags_as_required(["recorded", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        report = replay_run(_RECORDED.value, _WORKDIR.value,
                            log=lambda line: print(line, flush=True))  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        raise command_line.UsageError(str(e)) from e
    except (ReplayDiverged, EvolutionError) as e:
        raise command_line.RunError(f"the replay diverged: {e}") from e
    print(json.dumps({"replies_served": report.replies_served,
                      "replies_unused": report.replies_unused,
                      "differences": report.differences}, indent=2))  # fmt: skip
    if report.differences:
        raise command_line.RunError(f"{len(report.differences)} decision(s) differ")
    print(
        f"the replay reached the same decisions ({len(report.decisions['candidates'])} "
        f"candidates, {len(report.decisions['rejections'])} rejections)"
    )


if __name__ == "__main__":
    command_line.run(main)
