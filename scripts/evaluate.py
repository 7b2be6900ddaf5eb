"""Evaluates a checkpoint of a training run: held-out loss, bits per token, MQAR recall at
any numbers of key-value pairs, forward throughput.

    python scripts/evaluate.py --workdir=runs/tiny_deltanet --kv_pairs=4,8,16
    python scripts/evaluate.py \
        --workdir=runs/quickstart/candidates/0012-<name>/verify/attempt1/train --kv_pairs=8,16

Writes <workdir>/evals/step<N>.json. A baseline's run is evaluated here; an agent's candidate
(a run inside an evolution run's candidate folder) in a sandboxed worker; a run of your own
mixer file needs --mixer=<file>, which is then executed in this process.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.evals.checkpoint import evaluate_workdir, format_result

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's folder (has run.json).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
_KV_PAIRS = flags.DEFINE_list("kv_pairs", None, "MQAR: numbers of key-value pairs to test.")
_EXAMPLES = flags.DEFINE_integer("eval_examples", None, "Held-out examples per set.")
_MIXER = flags.DEFINE_string("mixer", None, "A baseline or your own mixer file to build.")
_DATA = flags.DEFINE_list("data", [], "For a candidate's run on text: its corpus and tokenizer "
                          "files, which its sandbox may read (named by you: the candidate "
                          "could write its run.json).")  # fmt: skip
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    run_dir = Path(_WORKDIR.value)
    try:
        kv_pairs = None if _KV_PAIRS.value is None else [int(n) for n in _KV_PAIRS.value]
        options = {"step": _STEP.value, "kv_pairs": kv_pairs, "eval_examples": _EXAMPLES.value}
        result = evaluate_workdir(run_dir, mixer=_MIXER.value, data=_DATA.value, **options)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        raise command_line.UsageError(str(e)) from e
    print(format_result(result))
    step = result["step"]
    print(f"wrote {run_dir / 'evals' / f'step{step}.json'}")


if __name__ == "__main__":
    command_line.run(main)
