"""The behavioural check of an optimizer candidate, before it may train. Runs in the worker.

Stages, in order; each failure names its stage and a reason a reviser can act on:
  build          make_optimizer(schedule) returns an object with callable init and update
  init           init(params) runs on a tree of mixed shapes and dtypes (float32, bfloat16)
  pure           the traced init and update hold no callback or side effect: nothing runs
                 Python or touches the process while the compiled step runs
  state          the state holds at most `max_state_ratio` times the parameters' elements
  update         `steps` eager updates with random gradients run (parameters move by them)
  structure      updates have the parameters' tree structure, shapes and dtypes
  finite         updates and the state's floats are finite
  moves          the updates are not all zero
  deterministic  the same inputs give bit-identical updates: repeated with the same factory's
                 transformation after other calls, and with a fresh one (a hidden Python
                 counter or closure shows here)
  jit            jitted updates agree with eager ones within `tolerance`
  descent        `descent_steps` jitted steps on a quadratic lower its loss by `min_descent`

Everything runs under a constant schedule of `learning_rate` (the descent under its own).
Fast on a CPU: the trees are small, and only the jit and descent stages compile.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    # the test parameters: one leaf per shape, dtypes taken in turn from `dtypes`
    shapes: tuple[tuple[int, ...], ...] = ((48, 32), (3, 16, 8), (32,), ())
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    steps: int = 3  # eager updates with random gradients
    learning_rate: float = 1e-2  # the constant schedule of the update stages
    max_state_ratio: float = 3.0  # state elements / parameter elements (AdamW: 2)
    tolerance: float = 1e-3  # jit vs eager, relative to each leaf's largest update (float32)
    descent_steps: int = 30
    descent_learning_rate: float = 3e-2
    min_descent: float = 0.05  # the quadratic's loss must fall by this fraction
    seed: int = 0

    def __post_init__(self):  # JSON brings lists back; keep the dataclass hashable
        object.__setattr__(self, "shapes", tuple(tuple(int(n) for n in s) for s in self.shapes))
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        if not self.shapes or not self.dtypes:
            raise ValueError("check.shapes and check.dtypes must not be empty")
        for name in self.dtypes:
            if jnp.dtype(name) not in (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64):
                raise ValueError(f"check.dtypes holds floating dtypes, got {name!r}")
        if self.steps < 2 or self.descent_steps < 1:
            raise ValueError("check.steps must be >= 2 and check.descent_steps >= 1")
        if self.max_state_ratio < 0 or not 0 <= self.min_descent < 1:
            raise ValueError("check.max_state_ratio must be >= 0, check.min_descent in [0, 1)")


class _Failed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _params(config: CheckConfig, seed: int) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {
        f"p{i}": jnp.asarray(rng.normal(0.0, 0.5, shape), config.dtypes[i % len(config.dtypes)])
        for i, shape in enumerate(config.shapes)
    }


def _like(params, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(scale * rng.normal(size=p.shape), p.dtype), params)


def _elements(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def _jaxprs(closed) -> list:
    """The jaxpr of `closed` and every jaxpr nested in its equations' parameters."""
    found, todo = [], [closed]
    while todo:
        item = todo.pop()
        jaxpr = getattr(item, "jaxpr", item)
        if not hasattr(jaxpr, "eqns"):
            continue
        found.append(jaxpr)
        for eqn in jaxpr.eqns:
            for value in eqn.params.values():
                values = value if isinstance(value, (tuple, list)) else (value,)
                todo.extend(v for v in values if hasattr(v, "eqns") or hasattr(v, "jaxpr"))
    return found


def impurities(closed) -> list[str]:
    """Callbacks, printing, foreign calls and effects in a traced function (`jax.make_jaxpr`)."""
    problems = [f"effect {e}" for e in getattr(closed, "effects", ())]
    for jaxpr in _jaxprs(closed):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if any(word in name for word in ("callback", "ffi", "print")):
                problems.append(f"primitive {name}")
    return sorted(set(problems))


def _structure_problem(updates, params) -> str | None:
    want, got = jax.tree.structure(params), jax.tree.structure(updates)
    if want != got:
        return f"updates have tree structure {got}, the parameters {want}"
    for (path, u), p in zip(jax.tree_util.tree_leaves_with_path(updates),
                            jax.tree.leaves(params), strict=True):  # fmt: skip
        where = jax.tree_util.keystr(path)
        shape, dtype = getattr(u, "shape", None), getattr(u, "dtype", None)
        if shape != p.shape:
            return f"the update of {where} has shape {shape}, its parameter {p.shape}"
        if dtype != p.dtype:
            return f"the update of {where} has dtype {dtype}, its parameter {p.dtype}"
    return None


def _finite_problem(updates, state) -> str | None:
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        if not bool(jnp.all(jnp.isfinite(u))):
            return f"the update of {jax.tree_util.keystr(path)} is not finite"
    for path, s in jax.tree_util.tree_leaves_with_path(state):
        x = jnp.asarray(s)
        if jnp.issubdtype(x.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(x))):
            return f"the state's {jax.tree_util.keystr(path)} is not finite"
    return None


def _run(tx, params, grads_seq, update: Callable | None = None) -> list:
    """The updates of a fresh run over `grads_seq`, parameters moving by them."""
    update = update or tx.update
    state, out = tx.init(params), []
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        out.append(updates)
        params = optax.apply_updates(params, updates)
    return out


def _bitwise_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # fmt: skip


def _mismatch(a, b, tolerance: float) -> str | None:
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b),
                            strict=True):  # fmt: skip
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        # low-precision leaves round differently when fused: a few of their ulps
        tol = max(tolerance, 4 * float(jnp.finfo(x.dtype).eps))
        scale = max(float(np.max(np.abs(x64), initial=0.0)), 1e-12)
        error = float(np.max(np.abs(x64 - y64), initial=0.0)) / scale
        if not error <= tol:
            return f"{jax.tree_util.keystr(path)}: relative difference {error:.2e} > {tol:.0e}"
    return None


def _quadratic(config: CheckConfig, params):
    """0.5 * mean(a * (p - target)^2) summed over the leaves, curvatures a in [0.5, 2]."""
    rng = np.random.default_rng(config.seed + 7)
    targets = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    curvature = jax.tree.map(
        lambda p: jnp.asarray(rng.uniform(0.5, 2.0, size=p.shape), jnp.float32), params
    )

    def loss(p):
        terms = jax.tree.map(
            lambda x, t, a: 0.5 * jnp.mean(a * (x.astype(jnp.float32) - t) ** 2),
            p, targets, curvature,
        )  # fmt: skip
        return sum(jax.tree.leaves(terms))

    return loss


def _stages(factory: Callable, config: CheckConfig, describe, report: dict[str, Any]) -> None:
    schedule = optax.constant_schedule(config.learning_rate)
    params = _params(config, config.seed)
    grads_seq = [_like(params, config.seed + 1 + i) for i in range(config.steps)]

    def attempt(stage: str, fn: Callable, *args):
        try:
            return fn(*args)
        except _Failed:
            raise
        except Exception as e:
            raise _Failed(stage, describe(e)) from e

    def made() -> Any:
        tx = factory(schedule)
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise _Failed("build", f"make_optimizer returned a {type(tx).__name__}, not an "
                                   "optax.GradientTransformation (init and update)")  # fmt: skip
        return tx

    tx = attempt("build", made)
    state = attempt("init", tx.init, params)

    traced_init = attempt("init", jax.make_jaxpr(tx.init), params)
    traced_update = attempt("update", jax.make_jaxpr(tx.update), grads_seq[0], state, params)
    found = impurities(traced_init) + impurities(traced_update)
    if found:
        held = ", ".join(sorted(set(found)))
        raise _Failed("pure", f"the traced optimizer holds {held}: no callbacks, printing or "
                              "side effects in init or update")  # fmt: skip

    ratio = _elements(state) / max(_elements(params), 1)
    report["state_ratio"] = round(ratio, 4)
    if ratio > config.max_state_ratio:
        raise _Failed("state", f"the state holds {ratio:.2f}x the parameters' elements; at "
                               f"most {config.max_state_ratio} (AdamW: 2, Lion: 1)")  # fmt: skip

    # The eager run, each step checked as it comes.
    moving, first = params, []
    for i, grads in enumerate(grads_seq):
        updates, state = attempt("update", tx.update, grads, state, moving)
        problem = _structure_problem(updates, params)
        if problem:
            raise _Failed("structure", f"step {i + 1}: {problem}")
        problem = _finite_problem(updates, state)
        if problem:
            raise _Failed("finite", f"step {i + 1}: {problem}")
        first.append(updates)
        moving = optax.apply_updates(moving, updates)
    if not any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(first)):
        raise _Failed("moves", f"every update of {config.steps} steps is zero: the optimizer "
                               "does not move the parameters")  # fmt: skip
    squares = [np.asarray(u, np.float64).ravel() ** 2 for u in jax.tree.leaves(first[-1])]
    report["update_rms"] = float(np.sqrt(np.mean(np.concatenate(squares))))

    # Repeats: other calls in between, then the same sequence from a fresh state, with the
    # same transformation and with a new one from the factory.
    attempt("deterministic", _run, tx, params, [_like(params, config.seed + 99)])
    again = attempt("deterministic", _run, tx, params, grads_seq)
    fresh = attempt("deterministic", _run, attempt("build", made), params, grads_seq)
    for what, run in (("repeated with the same transformation after other calls", again),
                      ("with a fresh transformation from make_optimizer", fresh)):  # fmt: skip
        if not _bitwise_equal(first, run):
            raise _Failed("deterministic", f"the same gradients, parameters and state gave "
                          f"different updates {what}: the update depends on Python-side state "
                          "(a counter, a list kept between calls); keep everything in the "
                          "optimizer state")  # fmt: skip

    jitted = attempt("jit", _run, tx, params, grads_seq, jax.jit(tx.update))
    for i, (a, b) in enumerate(zip(first, jitted, strict=True)):
        problem = _mismatch(a, b, config.tolerance)
        if problem:
            raise _Failed("jit", f"step {i + 1}: jitted and eager updates differ: {problem}")

    loss = _quadratic(config, params)
    tx = attempt("build", lambda: factory(optax.constant_schedule(config.descent_learning_rate)))

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    def descend():
        p, s = params, tx.init(params)
        for _ in range(config.descent_steps):
            p, s = step(p, s)
        return float(loss(p))

    start, end = float(loss(params)), attempt("descent", descend)
    report["descent"] = {"start": start, "end": end}
    if not end <= (1.0 - config.min_descent) * start:
        raise _Failed("descent", f"{config.descent_steps} steps at learning rate "
                      f"{config.descent_learning_rate} on a quadratic took its loss from "
                      f"{start:.4f} to {end:.4f}; it must fall by {config.min_descent:.0%}: the "
                      "updates do not descend (a sign error, or steps far too small)")  # fmt: skip


def check_optimizer(factory: Callable, config: CheckConfig,
                    describe: Callable[[BaseException], str]) -> dict[str, Any]:  # fmt: skip
    """The check's report: {"ok", "stage" (the failed one, or None), "reason", "seconds",
    "state_ratio", "update_rms", "descent"} (figures as far as the check got)."""
    started = time.perf_counter()
    report: dict[str, Any] = {"ok": True, "stage": None, "reason": None, "state_ratio": None}
    try:
        _stages(factory, config, describe, report)
    except _Failed as e:
        report.update(ok=False, stage=e.stage, reason=e.reason)
    report["seconds"] = round(time.perf_counter() - started, 3)
    if isinstance(report.get("descent"), dict):
        report["descent"] = {k: (v if math.isfinite(v) else str(v))
                             for k, v in report["descent"].items()}  # fmt: skip
    return report
