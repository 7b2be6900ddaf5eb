"""The checker: what a candidate mixer must show before it may train. Runs in the worker.

Stages, in order, each failing with a reason a researcher (or a reviser agent) can act on:
  instantiate  Mixer(d_model, num_heads, rngs=...) builds
  params       its parameter count is within the budget
  shapes       [B, T, D] -> [B, T, D] floating, for several B and T (T off any chunk size)
  finite       forward and backward at init are finite (at the largest checked shape)
  causality    outputs up to t ignore inputs after t: by perturbation and by gradients
  cost         compiled FLOPs at T, 2T, 4T grow sub-quadratically
  memory       the compiled forward + backward at 4T fits the memory budget
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    d_model: int = 64
    num_heads: int = 4
    batch_sizes: tuple[int, ...] = (1, 3)
    seq_lens: tuple[int, ...] = (1, 17, 71)
    causal_seq_len: int = 48
    causal_positions: tuple[int, ...] = (0, 13, 30)
    cost_seq_len: int = 256  # FLOPs measured at T, 2T and 4T
    max_cost_exponent: float = 1.5  # FLOPs(4T) / FLOPs(2T) must stay below 2^this
    max_params: int = 10**9
    max_memory_bytes: int = 2 << 30
    tolerance: float = 1e-5
    seed: int = 0

    def __post_init__(self):  # JSON brings lists back; keep the dataclass hashable
        for name in ("batch_sizes", "seq_lens", "causal_positions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


class CheckFailed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


def _flops(lowered) -> float:
    analysis = lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def _stage_instantiate(mixer_cls, c: CheckConfig, figures: dict):
    mixer = mixer_cls(c.d_model, c.num_heads, rngs=nnx.Rngs(c.seed))
    if not isinstance(mixer, nnx.Module):
        raise CheckFailed(
            "instantiate", f"Mixer(...) returned {type(mixer).__name__}, not an nnx.Module"
        )
    return nnx.split(mixer)


def _stage_params(state, c: CheckConfig, figures: dict) -> None:
    params = nnx.state(state, nnx.Param) if isinstance(state, nnx.State) else state
    count = sum(x.size for x in jax.tree.leaves(params))
    figures["params"] = int(count)
    if count > c.max_params:
        raise CheckFailed("params", f"{count:,} parameters exceed the budget of {c.max_params:,}")


def _input(key: int, batch: int, seq_len: int, d_model: int) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(key), (batch, seq_len, d_model))


def _stage_shapes(graphdef, state, c: CheckConfig, figures: dict) -> None:
    for batch in c.batch_sizes:
        for seq_len in c.seq_lens:
            x = _input(1, batch, seq_len, c.d_model)
            y = jax.eval_shape(_apply, graphdef, state, x)
            if y.shape != x.shape or not jnp.issubdtype(y.dtype, jnp.floating):
                raise CheckFailed(
                    "shapes",
                    f"input {x.shape} gave output {y.shape} {y.dtype}; expected {x.shape} floating",
                )


def _training_step(graphdef, state, c: CheckConfig, figures: dict):
    """Forward + backward at the largest checked shape, compiled once for `finite` and
    `memory` (its memory analysis)."""
    if "_compiled_step" not in figures:
        x = jax.ShapeDtypeStruct((c.batch_sizes[-1], 4 * c.cost_seq_len, c.d_model), jnp.float32)

        def loss(state, x):
            return jnp.mean(_apply(graphdef, state, x).astype(jnp.float32) ** 2)

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        figures["_compiled_step"] = step.lower(state, x).compile()
    return figures["_compiled_step"]


def _stage_finite(graphdef, state, c: CheckConfig, figures: dict) -> None:
    x = _input(2, c.batch_sizes[-1], 4 * c.cost_seq_len, c.d_model)
    value, grads = _training_step(graphdef, state, c, figures)(state, x)
    if not bool(jnp.isfinite(value)):
        raise CheckFailed("finite", f"the forward pass at init is not finite (mean square {value})")
    bad = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_leaves_with_path(grads)
           if not bool(jnp.all(jnp.isfinite(g)))]  # fmt: skip
    if bad:
        raise CheckFailed("finite", f"non-finite gradients at init for {', '.join(bad[:5])}")


def _stage_causality(graphdef, state, c: CheckConfig, figures: dict) -> None:
    seq_len = c.causal_seq_len
    x = _input(3, 2, seq_len, c.d_model)
    apply = jax.jit(lambda x: _apply(graphdef, state, x).astype(jnp.float32))
    # d(sum of outputs at position t) / d(inputs), compiled once with t as an argument
    grad_at = jax.jit(jax.grad(lambda x, t: jnp.sum(jnp.take(apply(x), t, axis=1))))
    y = apply(x)
    scale = max(1.0, float(jnp.max(jnp.abs(y))))
    for t in c.causal_positions:
        future = _input(4 + t, 2, seq_len - t - 1, c.d_model)
        y2 = apply(x.at[:, t + 1 :].set(future))
        diff = float(jnp.max(jnp.abs(y2[:, : t + 1] - y[:, : t + 1])))
        if diff > c.tolerance * scale:
            raise CheckFailed(
                "causality",
                f"outputs at positions <= {t} changed by {diff:.3g} when only inputs after {t} "
                "changed: the mixer reads the future",
            )
        grad = grad_at(x, t)
        leak = float(jnp.max(jnp.abs(grad[:, t + 1 :]))) if t + 1 < seq_len else 0.0
        if leak > c.tolerance:
            raise CheckFailed(
                "causality",
                f"the output at position {t} has gradient {leak:.3g} with respect to later inputs",
            )


def _stage_cost(graphdef, state, c: CheckConfig, figures: dict) -> None:
    flops = {}
    for mult in (1, 2, 4):
        seq_len = c.cost_seq_len * mult
        x = jax.ShapeDtypeStruct((1, seq_len, c.d_model), jnp.float32)
        lowered = jax.jit(_apply, static_argnums=0).lower(graphdef, state, x)
        flops[seq_len] = _flops(lowered)  # XLA's cost analysis of the program, not compiled
    figures["flops"] = flops
    low, high = flops[2 * c.cost_seq_len], flops[4 * c.cost_seq_len]
    if low <= 0:
        return  # the backend reports no FLOPs; nothing to judge
    exponent = math.log2(high / low)
    figures["cost_exponent"] = exponent
    if exponent > c.max_cost_exponent:
        raise CheckFailed(
            "cost",
            f"compiled FLOPs grow as T^{exponent:.2f} from T={2 * c.cost_seq_len} to "
            f"{4 * c.cost_seq_len} ({low:.3g} -> {high:.3g}): not sub-quadratic",
        )


def _stage_memory(graphdef, state, c: CheckConfig, figures: dict) -> None:
    analysis = _training_step(graphdef, state, c, figures).memory_analysis()
    used = 0
    if analysis is not None:
        used = int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                   + analysis.output_size_in_bytes)  # fmt: skip
    figures["memory_bytes"] = used
    if used > c.max_memory_bytes:
        raise CheckFailed(
            "memory",
            f"forward + backward at T={4 * c.cost_seq_len} needs {used / 2**30:.2f} GiB, over "
            f"the {c.max_memory_bytes / 2**30:.2f} GiB budget",
        )


def check_mixer(
    mixer_cls, config: CheckConfig, *, describe: Callable[[BaseException], str] = str
) -> dict[str, Any]:
    """Runs the stages in order; returns {ok, stage, reason, figures}.

    `describe` turns an unexpected exception (the candidate's own bug) into the reason.
    """
    figures: dict[str, Any] = {}
    stage = "instantiate"
    try:
        graphdef, state = _stage_instantiate(mixer_cls, config, figures)
        for name, run in (
            ("params", lambda: _stage_params(state, config, figures)),
            ("shapes", lambda: _stage_shapes(graphdef, state, config, figures)),
            ("finite", lambda: _stage_finite(graphdef, state, config, figures)),
            ("causality", lambda: _stage_causality(graphdef, state, config, figures)),
            ("cost", lambda: _stage_cost(graphdef, state, config, figures)),
            ("memory", lambda: _stage_memory(graphdef, state, config, figures)),
        ):
            stage = name
            run()
    except CheckFailed as e:
        return _report(False, e.stage, e.reason, figures)
    except BaseException as e:
        return _report(False, stage, describe(e), figures)
    return _report(True, None, None, figures)


def _report(ok: bool, stage: str | None, reason: str | None, figures: dict) -> dict[str, Any]:
    public = {k: v for k, v in figures.items() if not k.startswith("_")}
    return {"ok": ok, "stage": stage, "reason": reason, "figures": public}
