"""An lm-evaluation-harness model, "asi-jax", so `lm_eval` can score any checkpoint of ours.

    python -m asi_jax.evals.lm_eval_adapter run --model asi-jax \
        --model_args workdir=runs/tiny_deltanet --tasks arc_easy,piqa

`lm_eval` itself finds no plugins, so this module's `main` registers the model and then runs
lm_eval's command line; in Python, importing this module registers it (`lm_eval.simple_evaluate
(model="asi-jax", model_args={"workdir": ...})`). Scoring is `asi_jax.evals.downstream.Scorer`,
the same code as our own benchmarks, so the two agree to float tolerance on the same
documents. `write_local_tasks` writes task YAMLs that point the harness's own tasks at local
JSONL files (for machines without the Hugging Face hub). Needs the eval extra:
pip install 'asi-jax[eval]'.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asi_jax.evals.downstream import TASKS, DownstreamConfig, Scorer, task_file

try:
    import yaml
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # an optional extra
    raise ImportError(
        f"the lm_eval adapter needs lm-eval: pip install 'asi-jax[eval]' ({e})"
    ) from e

# The harness's YAML of each of our tasks, relative to lm_eval/tasks.
HARNESS_YAML = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
    "lambada_standard": "lambada/lambada_standard.yaml",
    "piqa": "piqa/piqa.yaml",
    "social_iqa": "siqa/siqa.yaml",
    "winogrande": "winogrande/default.yaml",
    "wikitext": "wikitext/wikitext.yaml",
}
LOCAL_SUFFIX = "_local"


@register_model("asi-jax")
class AsiJaxLM(LM):
    """A checkpoint of one of our runs (`workdir`, `step`: default the latest; `mixer`: a
    baseline name or a trusted mixer file, needed for a candidate's run), or a `scorer`."""

    def __init__(self, workdir: str | None = None, step: int | str | None = None,
                 mixer: str | None = None, batch_size: int | str = 32,
                 max_length: int | str = 1024, scorer: Scorer | None = None,
                 **unused: Any):  # fmt: skip
        super().__init__()
        if scorer is None:
            from asi_jax.evals.checkpoint import downstream_scorer
            from asi_jax.models.mixers import resolve_mixer

            if not workdir:
                raise ValueError("the asi-jax model needs model_args workdir=<a training run>")
            batch = 32 if str(batch_size).startswith("auto") else int(batch_size)
            evals = DownstreamConfig(batch_size=batch, max_length=int(max_length))
            scorer, _ = downstream_scorer(
                workdir, evals, step=None if step in (None, "") else int(step),
                mixer=resolve_mixer(mixer) if mixer else None,
            )  # fmt: skip
        self.scorer = scorer

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.scorer.loglikelihood([req.args[:2] for req in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return self.scorer.loglikelihood_rolling([req.args[0] for req in requests])

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError(
            "the asi-jax model scores log-likelihoods only: generative tasks are not supported"
        )


def harness_yaml(task: str) -> Path:
    """The installed harness's YAML for one of our tasks."""
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / HARNESS_YAML[task]


def write_local_tasks(data_dir: str | Path, out_dir: str | Path,
                      tasks: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """YAMLs in `out_dir`, one per task (default: every task with a file in `data_dir`), that
    include the harness's own task and read `<data_dir>/<task>.jsonl` as its test split; pass
    `out_dir` as lm_eval's include_path. Returns the task names, `<task>_local`."""
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    tasks = list(tasks) or [t for t in TASKS if (data_dir / f"{t}.jsonl").is_file()]
    if not tasks:
        raise FileNotFoundError(f"no <task>.jsonl of {sorted(TASKS)} in {str(data_dir)!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
        name = task + LOCAL_SUFFIX
        spec = {
            "include": str(harness_yaml(task)),
            "task": name,
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(task_file(data_dir, task))}},
            "training_split": None,
            "validation_split": None,
            "test_split": "test",
            "fewshot_split": None,
        }
        (out_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        names.append(name)
    return names


def main(argv: Sequence[str] | None = None) -> None:
    """lm_eval's command line, with the asi-jax model registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
