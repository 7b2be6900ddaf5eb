"""Evaluates a saved checkpoint of a training run, after the fact.

    result = evaluate_run("runs/tiny_deltanet", kv_pairs=(4, 8, 16, 32))

For questions the run itself did not ask: recall at more key-value pairs than it was trained
with, a larger held-out sample, an earlier checkpoint, or throughput on another machine. The
run's own run.json gives the config; the model is rebuilt, its parameters restored onto the
devices here (data-parallel over all of them, whatever mesh trained it), and the result is
written to `<run>/evals/step<N>.json` with what was asked and this environment.

Only a baseline's name is taken from run.json: a file named there is executed only when the
caller passes the class (`mixer`), because a run's folder may have been written by an agent's
candidate. Candidates' runs are re-evaluated inside the sandbox
(`asi_jax.candidates.engineer.evaluate_candidate_run`), which passes the candidate's class.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from asi_jax.evals.downstream import DownstreamConfig, Scorer, evaluate_benchmarks
from asi_jax.models.lm import MixerFactory
from asi_jax.models.mixers import MIXERS, get_mixer
from asi_jax.provenance import environment_record
from asi_jax.train import heldout, sharding
from asi_jax.train.config import from_config_dict, to_dict
from asi_jax.train.trainer import Trainer, checkpoint_manager, make_scorer, restore


def read_run_config(run_dir: str | Path):
    """The ExperimentConfig a run recorded in its run.json."""
    record_file = Path(run_dir) / "run.json"
    if not record_file.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a training run: it has no run.json")
    return from_config_dict(json.loads(record_file.read_text())["config"])


def evaluate_run(
    run_dir: str | Path,
    *,
    step: int | None = None,
    kv_pairs: Sequence[int] | None = None,
    eval_examples: int | None = None,
    mixer: MixerFactory | None = None,
) -> dict[str, Any]:
    """Evaluates the checkpoint at `step` (default: the latest) of the run in `run_dir`.

    `kv_pairs` replaces the config's MQAR eval pair counts, `eval_examples` its number of
    held-out examples per set; `mixer` is the class to build, required unless the run trained
    a baseline (the sandbox passes the candidate's). Returns what the JSON file holds.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if eval_examples is not None:  # (DataConfig checks the bound)
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, eval_examples=eval_examples)
        )
    sets = heldout.eval_sets(config.data, kv_pairs)  # bad pair counts fail before any restore
    trainer, state, step = restore_run(run_dir, config, step, mixer)
    result = {
        "run": str(run_dir.resolve()),
        "step": step,
        "mixer": config.mixer,
        "params": trainer.param_counts,
        "eval": heldout.evaluate(partial(trainer.eval_sums, state), sets, config.data),
        "asked": {
            "kv_pairs": None if kv_pairs is None else list(kv_pairs),
            "eval_examples": eval_examples,
        },
        "data": to_dict(config.data),
        "environment": environment_record(),
    }
    out = run_dir / "evals" / f"step{step}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def restore_run(run_dir: Path, config, step: int | None, mixer: MixerFactory | None
                ) -> tuple[Trainer, dict, int]:  # fmt: skip
    """(a Trainer for `config` on this machine's devices, the train state saved at `step`
    (default: the latest) restored onto them, the step)."""
    if mixer is None and config.mixer not in MIXERS:
        raise ValueError(
            f"run {str(run_dir)!r} trained the mixer file {config.mixer!r}, which is not "
            "executed on run.json's word; pass the mixer class (scripts/evaluate.py: --mixer)"
        )
    if not (run_dir / "checkpoints").is_dir():  # (opening a manager would create the folder)
        raise FileNotFoundError(
            f"run {str(run_dir)!r} has no checkpoint (its config's train.checkpoint_every is 0?)"
        )
    manager = checkpoint_manager(run_dir)
    try:
        steps = manager.all_steps()
        if not steps:
            raise FileNotFoundError(f"run {str(run_dir)!r} has no checkpoint")
        step = max(steps) if step is None else step
        if step not in steps:
            raise ValueError(
                f"run {str(run_dir)!r} has no checkpoint at step {step}; it has {steps}"
            )
        trainer = Trainer(config, sharding.make_mesh(-1, 1), mixer or get_mixer(config.mixer))
        state = restore(manager, step, trainer.init_state())
    finally:
        manager.close()
    return trainer, state, step


def downstream_scorer(run_dir: str | Path, evals: DownstreamConfig, *, step: int | None = None,
                      mixer: MixerFactory | None = None) -> tuple[Scorer, int]:  # fmt: skip
    """(a `Scorer` of the run's checkpoint at `step` (default: the latest), batched as `evals`
    says, with the run's tokenizer; the step). `mixer` as for `evaluate_run`."""
    run_dir = Path(run_dir)
    trainer, state, step = restore_run(run_dir, read_run_config(run_dir), step, mixer)
    return make_scorer(trainer, state, evals), step


def evaluate_downstream(run_dir: str | Path, evals: DownstreamConfig, *, step: int | None = None,
                        mixer: MixerFactory | None = None) -> dict[str, Any]:  # fmt: skip
    """The benchmarks of `evals` on the checkpoint at `step` (default: the latest) of the run
    in `run_dir`; written to `<run>/evals/downstream_step<N>.json`, which holds the result."""
    if not evals.benchmarks:
        raise ValueError("no benchmarks to run (evals.benchmarks is empty)")
    evals.check_files()
    run_dir = Path(run_dir)
    scorer, step = downstream_scorer(run_dir, evals, step=step, mixer=mixer)
    result = {
        "run": str(run_dir.resolve()),
        "step": step,
        "mixer": read_run_config(run_dir).mixer,
        "downstream": evaluate_benchmarks(evals, scorer),
        "asked": to_dict(evals),
        "environment": environment_record(),
    }
    out = run_dir / "evals" / f"downstream_step{step}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_downstream(result: dict[str, Any]) -> str:
    """One line per benchmark with its metrics, and the mean accuracy."""
    downstream = result["downstream"]
    lines = [f"{result['mixer']} at step {result['step']}"]
    for name, values in downstream["benchmarks"].items():
        figures = [f"{k} {v:.4f}" for k, v in values.items()
                   if k not in ("accuracy", "examples", "examples_per_second")]  # fmt: skip
        figures.append(f"{values['examples']} examples, {values['examples_per_second']:.1f}/s")
        lines.append(f"  {name:<16} " + "  ".join(figures))
    if downstream["accuracy"] is not None:
        lines.append(f"  mean accuracy    {downstream['accuracy']:.4f}")
    return "\n".join(lines)


def evaluate_workdir(run_dir: str | Path, *, mixer: str | None = None,
                     data: Sequence[str] = (), log: Callable[[str], None] = print,
                     **options) -> dict[str, Any]:  # fmt: skip
    """Re-evaluates the run in `run_dir` as scripts/evaluate.py does: with `mixer` (a
    baseline name or a trusted mixer file) when given; a candidate's run (its folder holds
    candidate.py, the mixer it trained) in a fresh sandbox that may read only `data`; else
    the baseline the run recorded."""
    from asi_jax.candidates.engineer import evaluate_candidate_run
    from asi_jax.candidates.worker import CANDIDATE_FILE
    from asi_jax.models.mixers import MIXERS, resolve_mixer

    run_dir = Path(run_dir)
    trained = read_run_config(run_dir).mixer
    if mixer:
        return evaluate_run(run_dir, mixer=resolve_mixer(mixer), **options)
    if trained not in MIXERS and (run_dir.parent / CANDIDATE_FILE).is_file():
        log(f"evaluating the candidate in {run_dir.parent} in the sandbox")
        return evaluate_candidate_run(run_dir.parent, read_only_paths=data, **options)
    return evaluate_run(run_dir, **options)


def format_result(result: dict[str, Any]) -> str:
    """One line per eval set: loss, accuracy, bits per token (byte), tokens per second."""
    lines = [f"{result['mixer']} at step {result['step']} ({result['params']['total']:,} params)"]
    for name, values in result["eval"].items():
        if name == "downstream":  # (a trainer's result; format_downstream prints those)
            continue
        figures = [f"loss {values['loss']:.4f}", f"acc {values['accuracy']:.3f}",
                   f"bits/token {values['bits_per_token']:.3f}"]  # fmt: skip
        if "tokens_per_second" in values:
            figures.append(f"{values['tokens_per_second']:,.0f} tok/s forward")
        lines.append(f"  {name:<12} " + "  ".join(figures))
    return "\n".join(lines)
