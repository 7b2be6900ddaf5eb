"""The trainer: one jitted, sharded train step; optax; orbax checkpoints with the data iterator.

    result = train(config, workdir)

Writes into `workdir`: run.json (config, environment, seeds), metrics.jsonl (one line per
logged step), checkpoints/ (orbax: train state + grain iterator state), result.json (what the
evolution loop and the report read). Rerunning with the same workdir resumes from the latest
checkpoint and reproduces the uninterrupted run exactly: the only randomness is the init seed
and the data stream, whose position is in the checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

import pallas_kernels as pk
from asi_jax.data.pipeline import train_iterator
from asi_jax.data.tokenizers import load_tokenizer
from asi_jax.evals.downstream import DownstreamConfig, Scorer, evaluate_benchmarks
from asi_jax.models.lm import CausalLM, MixerFactory, count_params
from asi_jax.models.mixers import resolve_mixer
from asi_jax.provenance import environment_record
from asi_jax.train import heldout, sharding
from asi_jax.train.config import ExperimentConfig, OptimConfig, to_dict
from asi_jax.train.metrics import MetricsWriter, progress_line
from asi_jax.train.monitor import QualityMonitor
from asi_jax.workdir import is_remote
from pallas_kernels.hardware import peak_flops

Batch = dict[str, jax.Array]


def masked_cross_entropy(logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict]:
    """Mean next-token loss over the masked positions; logits [B, T, V], batch arrays [B, T]."""
    mask = batch["mask"].astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    denom = jnp.maximum(mask.sum(), 1.0)
    correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
    sums = {"loss": (losses * mask).sum(), "correct": (correct * mask).sum(), "count": mask.sum()}
    return sums["loss"] / denom, sums


def continuation_scores(logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
    """Per example: the summed log-probability of the masked targets, and whether every masked
    target was the argmax. logits [B, T, V], batch arrays [B, T] -> logprob, greedy [B]."""
    mask = batch["mask"].astype(jnp.float32)
    logprobs = -optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    hit = jnp.argmax(logits, -1) == batch["targets"]
    return {"logprob": (logprobs * mask).sum(-1), "greedy": jnp.all(hit | (mask == 0), -1)}


# A candidate optimizer (the optimizer task's): learning-rate schedule -> transformation.
OptimizerFactory = Callable[[optax.Schedule], optax.GradientTransformation]


def make_optimizer(
    config: OptimConfig, steps: int, params, optimizer: OptimizerFactory | None = None
) -> tuple[optax.GradientTransformation, Callable]:
    """AdamW with linear warmup and cosine decay, global-norm clipping; no decay on vectors.
    `optimizer` replaces AdamW (not the clipping or the schedule): the optimizer task trains
    its candidates under the same schedule and clipping as the reference."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=min(config.warmup_steps, max(steps - 1, 0)),
        decay_steps=max(steps, config.warmup_steps + 1),
        end_value=config.learning_rate * config.min_lr_ratio,
    )
    if optimizer is not None:
        tx = optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer(schedule))
        return tx, schedule
    decay_mask = jax.tree.map(lambda x: x.ndim >= 2, params)
    tx = optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay,
                    mask=decay_mask),
    )  # fmt: skip
    return tx, schedule


class Trainer:
    """Builds the sharded state and the jitted steps for one experiment."""

    def __init__(
        self,
        config: ExperimentConfig,
        mesh: jax.sharding.Mesh,
        mixer: MixerFactory | None = None,
        optimizer: OptimizerFactory | None = None,
    ):
        self.config, self.mesh = config, mesh
        mixer = mixer or resolve_mixer(config.mixer)
        self.model_fn = lambda: CausalLM(config.model, mixer, rngs=nnx.Rngs(config.seed))
        abstract = nnx.eval_shape(self.model_fn)
        self.graphdef, abs_params, abs_rest = nnx.split(abstract, nnx.Param, ...)
        self.param_counts = count_params(abstract)
        param_sh = sharding.shardings(abs_params, mesh)
        rest_sh = sharding.shardings(abs_rest, mesh)
        self.tx, self.schedule = make_optimizer(
            config.optim, config.train.steps, abs_params, optimizer
        )

        # Built sharded from the start: parameters never sit whole on one device, and the
        # optimizer's per-parameter state (Adam moments) takes its parameter's sharding.
        def init_params():
            _, params, rest = nnx.split(self.model_fn(), nnx.Param, ...)
            return params, rest

        abs_opt = jax.eval_shape(self.tx.init, abs_params)
        if optimizer is None:
            opt_sh = optax.tree_map_params(
                self.tx,
                lambda _, param_sharding: param_sharding,
                abs_opt,
                param_sh,
                transform_non_params=lambda _: sharding.replicated(mesh),
            )
        else:  # a candidate's state need not be trees of params (factored moments, scalars)
            opt_sh = _state_shardings(abs_opt, abs_params, param_sh, mesh)
        self._init_params = jax.jit(init_params, out_shardings=(param_sh, rest_sh))
        self._init_opt = jax.jit(self.tx.init, out_shardings=opt_sh)
        self.compute_dtype = jnp.dtype(config.train.compute_dtype)

    def init_state(self) -> dict:
        """A fresh train state {step, params, rest, opt_state}; also compiles the steps for
        it. `rest` is the model's state besides its parameters (a dropout's RNG stream, batch
        statistics): carried from step to step, and checkpointed, like the parameters."""
        with jax.set_mesh(self.mesh):
            state = self.fresh_state()
            state["step"] = jax.device_put(state["step"], sharding.replicated(self.mesh))
        state_sharding = jax.tree.map(lambda x: x.sharding, state)
        self._train_step = jax.jit(
            self._step,
            in_shardings=(state_sharding, sharding.batch_sharding(self.mesh)),
            out_shardings=(state_sharding, sharding.replicated(self.mesh)),
            donate_argnums=0,
        )
        self._eval_step = jax.jit(self._eval_sums, out_shardings=sharding.replicated(self.mesh))
        self._score_step = jax.jit(self._scores, out_shardings=sharding.replicated(self.mesh))
        return state

    def fresh_state(self) -> dict:
        """{step, params, rest, opt_state} at initialisation, sharded (the step on the default
        device); traceable, so `asi_jax.train.exported` traces the same initialisation."""
        params, rest = self._init_params()
        return {"step": jnp.zeros((), jnp.int32), "params": params, "rest": rest,
                "opt_state": self._init_opt(params)}  # fmt: skip

    def _logits(self, params, rest, inputs, *, training: bool):
        """(logits, the model's updated non-parameter state). Evaluation runs the model in
        its deterministic mode (`nnx.Module.eval`: no dropout)."""
        params = jax.tree.map(lambda p: p.astype(self.compute_dtype), params)
        model = nnx.merge(self.graphdef, params, rest, copy=True)  # fresh Variables in this trace
        if not training:
            model.eval()
        logits = model(inputs)
        return logits, nnx.split(model, nnx.Param, ...)[2]

    def _step(self, state: dict, batch: Batch) -> tuple[dict, dict]:
        def loss_fn(params):
            logits, rest = self._logits(params, state["rest"], batch["inputs"], training=True)
            loss, sums = masked_cross_entropy(logits, batch)
            return loss, (sums, rest)

        (loss, (sums, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "rest": rest,
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss,
            "accuracy": sums["correct"] / jnp.maximum(sums["count"], 1.0),
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": self.schedule(state["step"]),
        }
        return new_state, metrics

    def _eval_sums(self, params, rest, batch: Batch) -> dict:
        logits, _ = self._logits(params, rest, batch["inputs"], training=False)
        return masked_cross_entropy(logits, batch)[1]

    def _scores(self, params, rest, batch: Batch) -> dict:
        logits, _ = self._logits(params, rest, batch["inputs"], training=False)
        return continuation_scores(logits, batch)

    def train_step(self, state: dict, local_batch) -> tuple[dict, dict]:
        with jax.set_mesh(self.mesh):
            return self._train_step(state, sharding.global_batch(local_batch, self.mesh))

    def eval_sums(self, state: dict, local_batch) -> dict[str, jax.Array]:
        """Summed masked loss, correct predictions and count of one batch (the same batch on
        every host)."""
        with jax.set_mesh(self.mesh):
            return self._eval_step(state["params"], state["rest"], local_batch)

    def scores(self, state: dict, batch) -> dict[str, jax.Array]:
        """`continuation_scores` of one batch (the same whole batch on every host), sharded
        over the batch axes: each host feeds its contiguous share of the rows."""
        hosts, host = jax.process_count(), jax.process_index()
        share = {k: v[host * len(v) // hosts : (host + 1) * len(v) // hosts]
                 for k, v in batch.items()}  # fmt: skip
        with jax.set_mesh(self.mesh):
            return self._score_step(state["params"], state["rest"],
                                    sharding.global_batch(share, self.mesh))  # fmt: skip

    @property
    def batch_devices(self) -> int:
        """Devices a batch is split over: its rows must be a multiple of this."""
        return math.prod(self.mesh.shape[a] for a in sharding.BATCH_AXES)


def _state_shardings(abs_opt, abs_params, param_sh, mesh: jax.sharding.Mesh):
    """Shardings for any optimizer state: a subtree shaped like the parameters takes theirs
    leaf by leaf; another leaf takes the sharding of a parameter of its shape where all such
    parameters agree, else it is replicated. Never runs the optimizer's code (optax's
    `tree_map_params` calls `init` on a placeholder, which a candidate's init may reject)."""
    params_def = jax.tree.structure(abs_params)
    param_leaves = jax.tree.leaves(abs_params)
    sharding_leaves = jax.tree.leaves(param_sh)
    by_shape: dict[tuple, set] = {}
    for p, s in zip(param_leaves, sharding_leaves, strict=True):
        by_shape.setdefault(tuple(p.shape), set()).add(s)

    def like_params(node) -> bool:
        return jax.tree.structure(node) == params_def

    def one(node):
        if like_params(node):
            leaves = jax.tree.leaves(node)
            return jax.tree.unflatten(params_def, [
                s if tuple(x.shape) == tuple(p.shape) else sharding.replicated(mesh)
                for x, p, s in zip(leaves, param_leaves, sharding_leaves, strict=True)
            ])  # fmt: skip
        found = by_shape.get(tuple(getattr(node, "shape", ())), set())
        return next(iter(found)) if len(found) == 1 else sharding.replicated(mesh)

    return jax.tree.map(one, abs_opt, is_leaf=like_params)


def checkpoint_manager(workdir: Path | epath.Path, keep: int = 2) -> ocp.CheckpointManager:
    folder = epath.Path(workdir) / "checkpoints" if is_remote(workdir) else (
        Path(workdir) / "checkpoints").resolve()  # fmt: skip
    return ocp.CheckpointManager(
        folder,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )


def restore(manager: ocp.CheckpointManager, step: int, state: dict, iterator=None) -> dict:
    """The train state saved at `step`, laid out like `state` (whose shardings may differ from
    the saving run's); also rewinds `iterator`, the grain iterator, to its saved position."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    items = {"state": ocp.args.StandardRestore(abstract)}
    if iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    return manager.restore(step, args=ocp.args.Composite(**items))["state"]


def training_curve(workdir: Path | epath.Path) -> list[dict[str, float]]:
    """The logged training losses ([{"step", "loss"}], resumed runs included): what an
    analyser reads of how a run learned."""
    path = workdir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    return [{"step": r["step"], "loss": r["loss"]} for r in records if "loss" in r]


def make_scorer(trainer: Trainer, state: dict, evals: DownstreamConfig) -> Scorer:
    """A downstream `Scorer` of `state`'s model with the run's tokenizer, batched as `evals`
    says (rows rounded up to a multiple of the batch devices)."""
    tokenizer = load_tokenizer(trainer.config.data.tokenizer_file)
    return Scorer(partial(trainer.scores, state), tokenizer, batch_size=evals.batch_size,
                  max_length=evals.max_length, multiple_of=trainer.batch_devices)  # fmt: skip


def train(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    mesh: jax.sharding.Mesh | None = None,
    mixer: MixerFactory | None = None,
    log: Callable[[str], None] = print,
    isolation: dict[str, Any] | None = None,
    optimizer: OptimizerFactory | None = None,
    optimizer_label: str | None = None,
    program: Path | None = None,
) -> dict[str, Any]:
    """Trains (or resumes) the experiment in `workdir`; returns what result.json holds.

    The linear-attention ops' impl="auto" means `config.train.kernel_impl` throughout.

    `mixer` overrides `config.mixer` with a class already loaded (the sandboxed worker's
    candidate); otherwise the config names a baseline or a trusted mixer file. `isolation`:
    the sandbox layers the run is confined by, for run.json (None: not sandboxed).
    `optimizer` replaces the config's AdamW (see `make_optimizer`); `optimizer_label` names
    it in run.json and result.json ("optimizer"; absent when the config's AdamW trained).
    `program`: a folder of programs traced in the sandbox (`asi_jax.train.exported`), run
    instead of tracing the model here: a mixer file's multi-host run.
    """
    with pk.default_impl(config.train.kernel_impl):
        return _train(
            config, workdir, mesh=mesh, mixer=mixer, log=log, isolation=isolation,
            optimizer=optimizer, optimizer_label=optimizer_label, program=program,
        )  # fmt: skip


def _train(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    mesh: jax.sharding.Mesh | None,
    mixer: MixerFactory | None,
    log: Callable[[str], None],
    isolation: dict[str, Any] | None,
    optimizer: OptimizerFactory | None,
    optimizer_label: str | None,
    program: Path | None,
) -> dict[str, Any]:
    workdir = epath.Path(workdir) if is_remote(workdir) else Path(workdir)
    config.evals.check_files()  # a missing benchmark file fails before training, not after
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    mesh = mesh or sharding.make_mesh(config.train.mesh_data, config.train.mesh_fsdp)
    run_record = {"config": to_dict(config), "environment": environment_record(),
                  "mesh": dict(mesh.shape), "isolation": isolation,
                  "kernels": {op: pk.resolve_impl("auto", op) for op in pk.OPS}}  # fmt: skip
    if optimizer is not None:
        run_record["optimizer"] = optimizer_label or "candidate"
    if program is not None:
        run_record["program"] = str(program)
    primary = jax.process_index() == 0  # a multi-host job's processes share the workdir
    if primary:
        (workdir / "run.json").write_text(json.dumps(run_record, indent=2) + "\n")

    if program is not None:
        from asi_jax.train.exported import ProgramTrainer  # it builds on this module

        trainer = ProgramTrainer(config, mesh, program)
    else:
        trainer = Trainer(config, mesh, mixer, optimizer)
    state = trainer.init_state()
    iterator = train_iterator(config.data)
    eval_sets = heldout.eval_sets(config.data)
    tc = config.train
    manager = checkpoint_manager(workdir, tc.keep_checkpoints)
    start_step = 0
    if manager.latest_step() is not None:
        start_step = manager.latest_step()
        state = restore(manager, start_step, state, iterator)
        log(f"resumed from step {start_step}")
    writer = MetricsWriter(workdir, resume_step=start_step, enabled=primary)

    def save(step: int) -> None:  # collective: every process writes its shards
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(iterator),
        ))  # fmt: skip

    def evaluate(step: int, label: str) -> dict:
        results = heldout.evaluate(partial(trainer.eval_sums, state), eval_sets, config.data)
        for name, values in results.items():
            writer.write(step, values, prefix=f"eval/{name}")
        log(f"{label}: {json.dumps(results)}")
        return results

    monitor = QualityMonitor(config.monitor)
    tokens_per_step = config.data.batch_size * config.data.seq_len
    flops_per_token = 6 * trainer.param_counts["non_embedding"]
    peak = peak_flops(jax.devices()[0].device_kind)
    status, reason, last, evals = "completed", None, {}, {}
    window_start, window_steps, compile_seconds = time.time(), 0, None
    for step in range(start_step, tc.steps):
        state, metrics = trainer.train_step(state, next(iterator))
        window_steps += 1
        done = step + 1
        if compile_seconds is None:
            jax.block_until_ready(metrics)
            compile_seconds = time.time() - window_start
            window_start, window_steps = time.time(), 0
        if done % tc.log_every == 0 or done == tc.steps:
            last = {k: float(v) for k, v in jax.device_get(metrics).items()}
            elapsed = time.time() - window_start
            step_seconds = elapsed / window_steps if window_steps else float("nan")
            tokens_per_second = tokens_per_step / step_seconds if window_steps else float("nan")
            record = {**last, "step_seconds": step_seconds, "tokens_per_second": tokens_per_second}
            if peak:
                record["mfu"] = tokens_per_second * flops_per_token / (peak * len(jax.devices()))
            writer.write(done, record)
            log(progress_line(done, tc.steps, record))
            window_start, window_steps = time.time(), 0
            reason = monitor.check(done, last["loss"], step_seconds)
            if reason:
                status = "stopped"
                log(f"stopping early: {reason}")
                break
        if tc.eval_every and done % tc.eval_every == 0 and done < tc.steps:
            evals = evaluate(done, f"eval at step {done}")
        if tc.checkpoint_every and done % tc.checkpoint_every == 0:
            save(done)
    final_step = int(state["step"])
    if status == "completed":
        evals = evaluate(final_step, "eval")
        leak = heldout.reads_the_future(partial(trainer.eval_sums, state),
                                        eval_sets["heldout"][0], config.model.vocab_size,
                                        seed=config.seed)  # fmt: skip
        if leak:  # the figures above came from a model that sees what it predicts
            status, reason = "stopped", f"the trained model reads the future: {leak}"
            log(f"stopping: {reason}")
        elif config.evals.benchmarks:
            scorer = make_scorer(trainer, state, config.evals)
            evals["downstream"] = evaluate_benchmarks(config.evals, scorer)
            log(f"downstream: {json.dumps(evals['downstream'])}")
        if tc.checkpoint_every and manager.latest_step() != final_step:
            save(final_step)
    manager.wait_until_finished()
    manager.close()
    writer.close()
    result = {
        "status": status,
        "stop_reason": reason,
        "steps": final_step,
        "final_train": last,
        "eval": evals,
        "params": trainer.param_counts,
        "compile_seconds": compile_seconds,
        "wall_seconds": time.time() - started,
        "mixer": config.mixer,
        "seed": config.seed,
        "curve": training_curve(workdir),
    }
    if optimizer is not None:
        result["optimizer"] = optimizer_label or "candidate"
    if primary:
        (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
