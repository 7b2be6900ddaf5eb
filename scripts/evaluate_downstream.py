"""Scores a training run's checkpoint on zero-shot downstream benchmarks (ARC-e/c, BoolQ,
HellaSwag, LAMBADA, PIQA, SIQA, WinoGrande, Wikitext) from local JSONL files.

    python scripts/evaluate_downstream.py --workdir=runs/tiny_deltanet \
        --data_dir=data/downstream --benchmarks=arc_easy,piqa,wikitext

`--data_dir` holds <task>.jsonl per benchmark, in the field layout of the task's Hugging Face
dataset (see asi_jax/evals/downstream.py); the default benchmarks are every task with a file
there. Writes <workdir>/evals/downstream_step<N>.json. A run of your own or an agent's mixer
file needs --mixer=<file>, which is then executed in this process.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.evals.checkpoint import evaluate_downstream, format_downstream, read_run_config
from asi_jax.evals.downstream import TASKS, DownstreamConfig, DownstreamDataError

_DEFAULTS = DownstreamConfig()
_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's folder (has run.json).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of <task>.jsonl; default: the run's "
                                "evals.data_dir.")  # fmt: skip
_BENCHMARKS = flags.DEFINE_list("benchmarks", None, f"Of {sorted(TASKS)}; default: every task "
                                "with a file in --data_dir.")  # fmt: skip
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", _DEFAULTS.max_examples,
                                     "Documents per benchmark (the first); 0: all.")  # fmt: skip
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Requests per batch.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", _DEFAULTS.max_length,
                                   "Tokens a request may span.")  # fmt: skip
_MIXER = flags.DEFINE_string("mixer", None, "A baseline or your own mixer file to build.")
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    from asi_jax.models.mixers import resolve_mixer

    run_dir = Path(_WORKDIR.value)
    try:
        data_dir = _DATA_DIR.value or read_run_config(run_dir).evals.data_dir
        if not data_dir or not Path(data_dir).is_dir():
            raise FileNotFoundError(f"--data_dir {data_dir!r} is not a folder of <task>.jsonl")
        benchmarks = _BENCHMARKS.value or [t for t in TASKS if (Path(data_dir) / f"{t}.jsonl")
                                           .is_file()]  # fmt: skip
        evals = DownstreamConfig(tuple(benchmarks), data_dir, _MAX_EXAMPLES.value,
                                 _BATCH_SIZE.value, _MAX_LENGTH.value)  # fmt: skip
        mixer = resolve_mixer(_MIXER.value) if _MIXER.value else None
        result = evaluate_downstream(run_dir, evals, step=_STEP.value, mixer=mixer)
    except (ValueError, TypeError, FileNotFoundError, DownstreamDataError) as e:
        raise command_line.UsageError(str(e)) from e
    print(format_downstream(result))
    step = result["step"]
    print(f"wrote {run_dir / 'evals' / f'downstream_step{step}.json'}")


if __name__ == "__main__":
    command_line.run(main)
