"""The engineer: takes a candidate's source through policy, checker and training, and revises.

    result = run_candidate(source, config, workdir)
    result = revise(source, reviser, config, workdir)   # up to config.max_attempts

Every attempt is recorded (source hash, stage, reason, figures, seconds, the limits it ran
under). On failure the result carries the trimmed error a reviser needs: ASI-Arch's engineer
debugs a failing design from its error instead of discarding the idea. An attempt that only
ran out of wall or CPU time is retried with the limits doubled, `limit_retries` times, before
it counts as failed (the reference baseline's on a busy machine). Setting `cancel` kills the
attempt in flight and raises `sandbox.Cancelled`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asi_jax.candidates.policy import check_source
from asi_jax.candidates.sandbox import Limits, SandboxResult, run_worker
from asi_jax.candidates.worker import CANDIDATE_FILE, PROGRAM_FOLDER
from asi_jax.tasks import Task, get_task
from asi_jax.train.config import ExperimentConfig, to_dict

# (source, error) -> revised source, or None to give up; an agent, or a person, fills this role.
Reviser = Callable[[str, str], str | None]


@dataclasses.dataclass(frozen=True)
class EngineerConfig:
    task: str = "linear_attention"  # a registered task (`asi_jax.tasks`)
    check: Any = None  # the task's check settings (its `check_config`); None: its defaults
    train: ExperimentConfig | None = None  # None: check only
    limits: Limits = Limits()
    reference: str | None = None  # budgets are relative to this baseline; None: the task's
    max_attempts: int = 2  # sources tried: the first, then each revision
    limit_retries: int = 0  # retries, at doubled limits, of an attempt that ran out of time
    visible_devices: str | None = None  # pin the sandbox to these accelerators
    # (traced-program fingerprint, name) of earlier candidates: a candidate whose check finds
    # one of these fingerprints is a structural duplicate and is not trained.
    known_structures: tuple[tuple[str, str], ...] = ()
    # Processes of the training run, one per node, joined by jax.distributed: a backend that
    # spreads work over nodes (Ray) runs it so; 1: one sandboxed process (run_attempts).
    hosts: int = 1


@dataclasses.dataclass(frozen=True)
class Attempt:
    number: int
    code_hash: str
    ok: bool
    stage: str | None  # where it failed: policy, load, a checker stage, train, sandbox
    reason: str | None
    check: dict[str, Any] | None
    train: dict[str, Any] | None
    seconds: float
    limits: dict[str, Any] | None = None  # the sandbox limits it ran under
    limit: str | None = None  # "wall" or "cpu" when it ran out of that time
    cpu_seconds: float | None = None  # the worker's CPU time, when it finished
    isolation: dict[str, Any] | None = None  # the sandbox's layers, as the worker applied them


@dataclasses.dataclass(frozen=True)
class Result:
    ok: bool
    stage: str | None
    reason: str | None
    check: dict[str, Any] | None
    train: dict[str, Any] | None
    attempts: tuple[Attempt, ...]
    source: str  # the last source tried (the accepted one when ok)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def code_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def task_file(task: Task) -> str | None:
    """The source file of a task defined outside asi_jax (a user's or a test's), which the
    worker imports to register it; it reaches the sandbox read-only, like declared data."""
    cls = type(task)
    return None if cls.__module__.startswith("asi_jax.") else inspect.getfile(cls)


def worker_request(config: EngineerConfig, baseline: str | None = None) -> dict[str, Any]:
    """What the sandboxed worker is asked to do: the task's check (and the stage's training
    when configured), for the candidate's file or the trusted `baseline`."""
    task = get_task(config.task)
    check = config.check if config.check is not None else task.check_config()
    return {
        "job": "check" if config.train is None else "evaluate",
        "task": task.name,
        "task_file": task_file(task),
        "check": task.check_request(
            check, config.train, config.reference or task.default_reference
        ),
        "train": None if config.train is None else to_dict(config.train),
        "baseline": baseline,
        "pinned": config.visible_devices,
        "known_structures": dict(config.known_structures),
    }


def _attempt(number: int, source: str, config: EngineerConfig, workdir: Path,
             baseline: str | None, limits: Limits,
             cancel: threading.Event | None) -> Attempt:  # fmt: skip
    start = time.monotonic()
    task: Task = get_task(config.task)
    violations = [] if baseline else check_source(source, task.policy)  # baselines: our code
    digest = code_hash(source)
    if violations:
        reason = "\n".join(str(v) for v in violations)
        return Attempt(number, digest, False, "policy", reason, None, None,
                       time.monotonic() - start)  # fmt: skip
    folder = workdir / f"attempt{number}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANDIDATE_FILE).write_text(source)
    request = worker_request(config, baseline)
    data = () if config.train is None else (*config.train.data.declared_paths,
                                            *config.train.evals.declared_paths)  # fmt: skip
    data = (*data, *([request["task_file"]] if request["task_file"] else []))
    outcome: SandboxResult = run_worker(request, folder, limits, read_only_paths=data,
                                        visible_devices=config.visible_devices,
                                        cancel=cancel)  # fmt: skip
    # Next to the sandbox's folder, not in it: the candidate controls what is inside.
    (workdir / f"attempt{number}.log").write_text(outcome.output_tail)
    seconds = time.monotonic() - start
    ran = {"limits": dataclasses.asdict(limits), "cpu_seconds": outcome.cpu_seconds,
           "isolation": outcome.isolation}  # fmt: skip
    if not outcome.ok:
        reason = f"{outcome.error}\n{outcome.output_tail[-1500:]}".strip()
        return Attempt(number, digest, False, "sandbox", reason, None, None, seconds,
                       limit=outcome.limit, **ran)  # fmt: skip
    r = outcome.response
    return Attempt(number, digest, r["ok"], r.get("stage"), r.get("reason"), r.get("check"),
                   r.get("train"), seconds, **ran)  # fmt: skip


def run_attempts(first: int, source: str, config: EngineerConfig, workdir: Path,
                 baseline: str | None, cancel: threading.Event | None
                 ) -> list[Attempt]:  # fmt: skip
    """One attempt (numbered `first`, its sandbox folder in `workdir`), then up to
    `config.limit_retries` more at doubled limits while it only ran out of time. The unit of
    work a backend runs where it likes (`asi_jax.evolution.backends`)."""
    limits, attempts = config.limits, []
    for retry in range(config.limit_retries + 1):
        attempt = _attempt(first + retry, source, config, workdir, baseline, limits, cancel)
        attempts.append(attempt)
        if attempt.limit is None:
            break
        limits = limits.doubled()
    return attempts


# run_attempts' signature: what a backend provides to run the sandboxed attempts elsewhere.
Attempts = Callable[[int, str, EngineerConfig, Path, "str | None", "threading.Event | None"],
                    list[Attempt]]  # fmt: skip


def _result(attempts: list[Attempt], source: str) -> Result:
    last = attempts[-1]
    return Result(last.ok, last.stage, last.reason, last.check, last.train, tuple(attempts),
                  source)  # fmt: skip


def run_candidate(source: str, config: EngineerConfig, workdir: str | Path, *,
                  baseline: str | None = None, cancel: threading.Event | None = None,
                  runner: Attempts | None = None) -> Result:  # fmt: skip
    """Static policy, then check (and train, if configured) in the sandbox, without revision.
    `baseline` names a task's baseline to run instead of `source` (which then only labels
    it). `runner` runs the sandboxed attempts (default `run_attempts`, here)."""
    workdir = Path(workdir)
    run = runner or run_attempts
    result = _result(run(1, source, config, workdir, baseline, cancel), source)
    _save(result, workdir)
    return result


def revise(source: str, reviser: Reviser, config: EngineerConfig, workdir: str | Path, *,
           cancel: threading.Event | None = None, runner: Attempts | None = None
           ) -> Result:  # fmt: skip
    """Attempts, revising from the error after each failure, up to `config.max_attempts`
    revisions of the source (retries at doubled limits not counted). The reviser runs here;
    `runner` runs the sandboxed attempts (default `run_attempts`, here)."""
    workdir = Path(workdir)
    run, attempts = runner or run_attempts, []
    for revision in range(1, config.max_attempts + 1):
        attempts += run(len(attempts) + 1, source, config, workdir, None, cancel)
        attempt = attempts[-1]
        if attempt.ok or revision == config.max_attempts:
            break
        error = f"stage {attempt.stage} failed:\n{attempt.reason}"
        revised = reviser(source, error)
        if revised is None or revised == source:
            break  # the reviser cannot repair it
        source = revised
    result = _result(attempts, source)
    _save(result, workdir)
    return result


def _save(result: Result, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "engineer.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")


def evaluate_candidate_run(
    folder: str | Path,
    *,
    step: int | None = None,
    kv_pairs: Sequence[int] | None = None,
    eval_examples: int | None = None,
    limits: Limits | None = None,
    read_only_paths: Sequence[str] = (),
    task: str = "linear_attention",
) -> dict[str, Any]:
    """Re-evaluates the training run of the candidate in `folder` (the sandbox folder holding
    its candidate.py and train/) in a fresh sandboxed worker; see `asi_jax.evals.checkpoint`.

    The source is checked against the static policy again first: the folder was writable by
    the candidate. For the same reason the files the run reads (`read_only_paths`: its corpus
    and tokenizer) come from the caller, never from the folder's run.json. Raises
    RuntimeError with the worker's reason when the evaluation fails.
    """
    folder = Path(folder)
    source_file = folder / CANDIDATE_FILE
    if not source_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no {CANDIDATE_FILE}")
    violations = check_source(source_file.read_text(), get_task(task).policy)
    if violations:
        raise RuntimeError(f"{source_file} no longer passes the policy: {violations[0]}")
    options = {"step": step, "kv_pairs": None if kv_pairs is None else list(kv_pairs),
               "eval_examples": eval_examples}  # fmt: skip
    request = {"job": "evaluate_checkpoint", "task": task, "evaluate": options}
    outcome = run_worker(request, folder, limits or Limits(), read_only_paths=read_only_paths)
    if not outcome.ok:
        raise RuntimeError(f"evaluation in the sandbox failed: {outcome.error}\n"
                           f"{outcome.output_tail[-1500:]}")  # fmt: skip
    if not outcome.response["ok"]:
        raise RuntimeError(f"evaluation in the sandbox failed:\n{outcome.response['reason']}")
    return outcome.response["eval"]


def check_mixer_source(source_file: str | Path, task: str = "linear_attention") -> str:
    """The file's source, when it passes the task's static policy (as a candidate's must);
    raises ValueError naming the first violation."""
    source = Path(source_file).read_text()
    violations = check_source(source, get_task(task).policy)
    if violations:
        raise ValueError(f"{source_file} does not pass the sandbox's policy: {violations[0]}")
    return source


def export_training_program(
    source_file: str | Path,
    experiment: ExperimentConfig,
    folder: str | Path,
    *,
    platform: str,
    devices: int,
    eval_rows: Sequence[int],
    limits: Limits | None = None,
    task: str = "linear_attention",
) -> Path:
    """Traces a multi-host run of the mixer in `source_file` in a sandboxed worker, on
    `devices` simulated CPU devices for `platform`, and returns the folder of its programs
    (`folder`/program; see `asi_jax.train.exported`, whose loader checks them: the
    candidate could write anything there). The source passes the static policy first, as a
    candidate's does. Raises ValueError with the reason when it does not, RuntimeError when
    the export fails."""
    source = check_mixer_source(source_file, task)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANDIDATE_FILE).write_text(source)
    request = {"job": "export", "task": task, "train": to_dict(experiment),
               "export": {"platform": platform, "devices": devices,
                          "eval_rows": [int(r) for r in eval_rows]}}  # fmt: skip
    outcome = run_worker(request, folder, limits or Limits())
    if not outcome.ok:
        raise RuntimeError(f"tracing {source_file} in the sandbox failed: {outcome.error}\n"
                           f"{outcome.output_tail[-1500:]}")  # fmt: skip
    if not outcome.response["ok"]:
        raise RuntimeError(
            f"tracing {source_file} in the sandbox failed "
            f"({outcome.response['stage']}):\n{outcome.response['reason']}"
        )
    return folder / PROGRAM_FOLDER
