"""The checker: what a candidate mixer must show before it may train. Runs in the worker.

Stages, in order, each failing with a reason a researcher (or a reviser agent) can act on:
  instantiate  Mixer(d_model, num_heads, rngs=...) builds
  params       its parameter count is within the budget at d_model and at twice d_model
  shapes       [B, T, D] -> [B, T, D] floating, for several B and T (T off any chunk size)
  finite       forward and backward at init are finite (at the largest checked shape)
  causality    no output position reads a later input, by value or by gradient, at every
               position, at several T and B (the training ones among them)
  gradients    the backward pass is the derivative of the forward pass: finite differences
               along random directions of the input and of each parameter agree with it
  cost         FLOPs counted on the forward + backward program at T, 2T, 4T (loop bodies
               times their trip counts) grow sub-quadratically; compiled time is a backstop
  memory       the compiled forward + backward at 4T fits the memory budget

Once the shapes pass, the report's "structure" holds the fingerprint of the traced program
(`jaxpr_fingerprint`), so the controller can refuse a candidate that computes what an earlier
one computed under other names.

The candidate's code runs as training runs it: under `jax.vjp` with its parameters and its
input differentiated, so it cannot behave one way when measured and another when trained.
Only `nnx.Param` is differentiated: RNG streams, counters and other state ride along
unchanged, so every forward pass at the same input gives the same output (a Dropout mask
included). Causality and gradients are checked with the parameters moved off their initial
values, as training moves them: a leak behind a gate initialised at zero shows there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asi_jax.candidates.cost import UnboundedLoop, jaxpr_flops
from asi_jax.models.lm import parameter_count


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    d_model: int = 64
    num_heads: int = 4
    batch_sizes: tuple[int, ...] = (1, 3)
    seq_lens: tuple[int, ...] = (1, 17, 71)
    causal_seq_len: int = 48  # a chunk multiple, checked for causality beside seq_lens
    # The shapes training and evaluation run at (the engineer fills them from the
    # experiment; empty / 0: none): causality is checked there too.
    train_batch_sizes: tuple[int, ...] = ()
    train_seq_len: int = 0
    cost_seq_len: int = 256  # FLOPs measured at T, 2T and 4T
    max_cost_exponent: float = 1.5  # FLOPs(4T) / FLOPs(2T) must stay below 2^this
    # The parameter budget: this many times the reference baseline's parameters (the task
    # fills max_params and max_params_wide from it).
    param_budget_ratio: float = 1.5
    max_params: int = 10**9
    max_params_wide: int = 0  # the budget at 2 * d_model; 0: none
    max_memory_bytes: int = 2 << 30
    tolerance: float = 1e-5  # causality, relative to the size of each output position
    # Relative mismatch of backward and finite differences: honest mixers with kinks (ReLU
    # features) stay within a few percent; a rescaled or cut gradient is off by far more.
    gradient_tolerance: float = 5e-2
    seed: int = 0

    def __post_init__(self):  # JSON brings lists back; keep the dataclass hashable
        for name in ("batch_sizes", "seq_lens", "train_batch_sizes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.causal_seq_len < 2:
            raise ValueError(f"check.causal_seq_len must be at least 2, got {self.causal_seq_len}")


class CheckFailed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


# The checker's programs run a handful of times each: on CPU a quick compile beats fast code
# (3x less compile time, 1.5x slower runs). The memory figure, XLA's buffer assignment, is
# the same at any optimisation level.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# How far the causality and gradient checks move each parameter off its initial value.
_MOVE_RELATIVE, _MOVE_ABSOLUTE = 0.1, 1e-2
# Finite-difference steps, relative to the direction's scale, tried in turn: the first has
# the least rounding noise, the last the least truncation error and crosses the fewest kinks
# (a ReLU feature map puts one in every unit; near a zero vector an L2 norm turns sharply).
_FD_STEPS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
_FD_NOISE = 1e-5  # the forward pass's relative rounding error a finite difference may carry
_TIMING_RUNS = 5
_TIMING_MARGIN = 0.5  # the clock alone refuses only this far above max_cost_exponent
# Below this at 4T the clock measures overheads and caches, not growth: a mixer whose state
# outgrows a cache at 4T takes 4x the time of 2T in milliseconds (seen at load 9 on 2 cores).
_TIMING_MIN_SECONDS = 2e-2


@dataclasses.dataclass
class _Mixer:
    """A mixer split for functional use: its parameters apart from its other state."""

    graphdef: Any
    params: Any
    rest: Any

    def apply(self, params, x: jax.Array) -> jax.Array:
        # Fresh Variables in the current trace: a Dropout's RNG stream counts its calls, and
        # nnx refuses to update a Variable made at another trace level.
        return nnx.merge(self.graphdef, params, self.rest, copy=True)(x)

    def pullback(self, params, x: jax.Array, cotangent: jax.Array):
        """(y, d<cotangent, y>/dparams, d<cotangent, y>/dx): one training-like pass."""
        y, vjp = jax.vjp(self.apply, params, x)
        _check_shape(y, x.shape)
        d_params, d_x = vjp(cotangent.astype(y.dtype))
        return y, d_params, d_x


def _compile(fn: Callable, *args):
    lowered = jax.jit(fn).lower(*args)
    return lowered.compile(_QUICK_COMPILE if jax.default_backend() == "cpu" else None)


def _random(c: CheckConfig, *tags: int) -> np.random.Generator:
    """The checker's own random numbers come from numpy: jax.random would compile a program
    for every new shape."""
    return np.random.default_rng([c.seed, *tags])


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _floating(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.floating)


def _rms(leaf) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(leaf, np.float64)))))


def _stage_instantiate(mixer_cls, c: CheckConfig, figures: dict) -> _Mixer:
    mixer = mixer_cls(c.d_model, c.num_heads, rngs=nnx.Rngs(c.seed))
    if not isinstance(mixer, nnx.Module):
        raise CheckFailed(
            "instantiate", f"Mixer(...) returned {type(mixer).__name__}, not an nnx.Module"
        )
    return _Mixer(*nnx.split(mixer, nnx.Param, ...))


def _stage_params(mixer_cls, m: _Mixer, c: CheckConfig, figures: dict) -> None:
    count = parameter_count(m.params)
    figures["params"] = count
    if count > c.max_params:
        raise CheckFailed("params", f"{count:,} parameters exceed the budget of {c.max_params:,}")
    if not c.max_params_wide:
        return
    # At twice the width as well: a mixer whose parameters grow faster than the baseline's
    # (cubic in the width, say) fits at one width and not at the next. Shapes only: nothing
    # is allocated.
    wide = nnx.eval_shape(lambda: mixer_cls(2 * c.d_model, c.num_heads, rngs=nnx.Rngs(c.seed)))
    count = parameter_count(wide)
    figures["params_wide"] = count
    if count > c.max_params_wide:
        raise CheckFailed(
            "params",
            f"at twice the width (d_model {2 * c.d_model}) its {count:,} parameters exceed the "
            f"budget of {c.max_params_wide:,}: they grow faster with the width than the "
            "baseline's",
        )


def _check_shape(y, x_shape: tuple[int, ...]) -> None:
    if tuple(y.shape) != x_shape or not jnp.issubdtype(y.dtype, jnp.floating):
        raise CheckFailed(
            "shapes",
            f"input {x_shape} gave output {tuple(y.shape)} {y.dtype}; expected {x_shape} floating",
        )


def _stage_shapes(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    for batch in c.batch_sizes:
        for seq_len in c.seq_lens:
            x = jax.ShapeDtypeStruct((batch, seq_len, c.d_model), jnp.float32)
            _check_shape(jax.eval_shape(m.apply, m.params, x), x.shape)


def _training_step(m: _Mixer, c: CheckConfig, figures: dict):
    """Forward + backward at the largest checked shape, compiled once for `finite` and
    `memory` (its memory analysis)."""
    if "_compiled_step" not in figures:
        x = jax.ShapeDtypeStruct((c.batch_sizes[-1], 4 * c.cost_seq_len, c.d_model), jnp.float32)

        def loss(params, x):
            return jnp.mean(m.apply(params, x).astype(jnp.float32) ** 2)

        step = jax.value_and_grad(loss, argnums=(0, 1))
        figures["_compiled_step"] = _compile(step, m.params, x)
    return figures["_compiled_step"]


def _stage_finite(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    x = _normal(_random(c, 2), (c.batch_sizes[-1], 4 * c.cost_seq_len, c.d_model))
    value, grads = jax.device_get(_training_step(m, c, figures)(m.params, x))
    if not np.isfinite(value):
        raise CheckFailed("finite", f"the forward pass at init is not finite (mean square {value})")
    bad = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_leaves_with_path(grads)
           if not np.isfinite(g).all()]  # fmt: skip
    if bad:
        raise CheckFailed("finite", f"non-finite gradients at init for {', '.join(bad[:5])}")


def _moved_params(m: _Mixer, c: CheckConfig):
    """The initial parameters plus noise of 10% of each one's RMS and at least 0.01."""
    leaves, treedef = jax.tree.flatten(jax.device_get(m.params))
    rng, moved = _random(c, 5), []
    for leaf in leaves:
        if _floating(leaf):
            noise = (_MOVE_RELATIVE * _rms(leaf) + _MOVE_ABSOLUTE) * _normal(rng, leaf.shape)
            leaf = (leaf + noise).astype(leaf.dtype)
        moved.append(leaf)
    return jax.tree.unflatten(treedef, moved)


def _causal_lengths(c: CheckConfig) -> list[int]:
    return sorted({t for t in (*c.seq_lens, c.causal_seq_len, c.train_seq_len) if t >= 2})


def _causal_shapes(c: CheckConfig) -> list[tuple[int, int]]:
    """(B, T) pairs: each training batch size at the training length, and the other batch
    sizes (1, 2 and the checked ones) paired in turn with the other lengths, so that every
    B and every T is checked without a compile for each of their combinations."""
    train = [b for b in c.train_batch_sizes if b >= 1] if c.train_seq_len >= 2 else []
    shapes = {(b, c.train_seq_len) for b in train}
    batches = sorted({1, 2, *c.batch_sizes} - set(train)) or [1]
    lengths = [t for t in _causal_lengths(c) if t != c.train_seq_len or not train]
    lengths = lengths or [c.train_seq_len]
    for i in range(max(len(batches), len(lengths))):
        shapes.add((batches[i % len(batches)], lengths[i % len(lengths)]))
    return sorted(shapes)


def _gradient_shape(c: CheckConfig) -> tuple[int, int]:
    """The training shape where there is one (the backward pass matters in training only),
    else the largest causality shape; either way one of `_causal_shapes`, compiled already."""
    if c.train_seq_len >= 2 and c.train_batch_sizes and c.train_batch_sizes[0] >= 1:
        return c.train_batch_sizes[0], c.train_seq_len
    return max(_causal_shapes(c), key=lambda shape: (shape[0] * shape[1], shape))


def _leaks(y, y_ref, d_x, cuts):
    """Per row b: the largest change of an output up to cuts[b], relative to the size of its
    position's outputs (at least the row's median size: an FFT's rounding spreads over the
    row); the largest input gradient after cuts[b], relative to the largest one up to it.
    Each with its value and (row, position)."""
    y, y_ref = y.astype(jnp.float32), y_ref.astype(jnp.float32)
    tiny = jnp.finfo(jnp.float32).tiny
    past = (jnp.arange(y.shape[1])[None, :] <= cuts[:, None])[..., None]  # [B, T, 1]
    size = jnp.max(jnp.abs(y_ref), axis=-1, keepdims=True)
    size = jnp.maximum(size, jnp.median(size, axis=1, keepdims=True))
    change = jnp.where(past, jnp.abs(y - y_ref), 0.0)
    value_ratio = change / jnp.maximum(size, tiny)
    d_x = jnp.abs(d_x.astype(jnp.float32))
    earlier = jnp.max(jnp.where(past, d_x, 0.0), axis=(1, 2), keepdims=True)
    later = jnp.where(past, 0.0, d_x)
    grad_ratio = later / jnp.maximum(earlier, tiny)
    finite = jnp.all(jnp.isfinite(jnp.where(past, y, 0.0))) & jnp.all(jnp.isfinite(y_ref))
    finite &= jnp.all(jnp.isfinite(d_x))

    def worst(ratio, values):
        flat = jnp.argmax(ratio)
        b, t, _ = jnp.unravel_index(flat, ratio.shape)
        return ratio.reshape(-1)[flat], values.reshape(-1)[flat], b, t

    return worst(value_ratio, change), worst(grad_ratio, later), earlier[:, 0, 0], finite


def _probe(m: _Mixer, figures: dict, shape: tuple[int, int, int]):
    """One training-like pass, compiled once per input shape: row b's inputs after cuts[b]
    replaced by `future`, the cotangent `projection` at position cuts[b] (everywhere, if
    `everywhere`); returns y, the gradients, and `_leaks` against `y_ref`."""
    probes = figures.setdefault("_probes", {})
    if shape not in probes:
        x = jax.ShapeDtypeStruct(shape, jnp.float32)

        def probe(params, x, future, projection, cuts, y_ref, everywhere):
            position = jnp.arange(x.shape[1])[None, :, None]
            cut = cuts[:, None, None]
            x_cut = jnp.where(position > cut, future, x)
            cotangent = jnp.where((position == cut) | everywhere, projection, 0.0)
            y, d_params, d_x = m.pullback(params, x_cut, cotangent)
            return y, d_params, d_x, _leaks(y, y_ref, d_x, cuts)

        cuts = jax.ShapeDtypeStruct(shape[:1], jnp.int32)
        flag = jax.ShapeDtypeStruct((), jnp.bool_)
        probes[shape] = _compile(probe, m.params, x, x, x, cuts, x, flag)
    return probes[shape]


def _row_cuts(batch: int, seq_len: int) -> list[np.ndarray]:
    """Cut points spread over the rows of the batch, every position 0..T-2 once (a row with
    nothing left to cut is cut at T-1, where there is no future)."""
    cuts = list(range(seq_len - 1))
    groups = [cuts[i : i + batch] for i in range(0, len(cuts), batch)]
    return [np.array(g + [seq_len - 1] * (batch - len(g)), np.int32) for g in groups]


def _stage_causality(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    params = jax.device_put(_moved_params(m, c))
    worst_value, worst_grad = 0.0, 0.0
    for index, (batch, seq_len) in enumerate(_causal_shapes(c)):
        shape = (batch, seq_len, c.d_model)
        probe = _probe(m, figures, shape)
        rng = _random(c, 3, index)
        x, future, projection = jax.device_put([_normal(rng, shape) for _ in range(3)])
        no_future = np.full((batch,), seq_len - 1, np.int32)
        y_ref = probe(params, x, future, projection, no_future, x, False)[0]
        where = f"at B={batch}, T={seq_len}"
        for cuts in _row_cuts(batch, seq_len):
            leaks = probe(params, x, future, projection, cuts, y_ref, False)[3]
            value, grad, earlier, finite = jax.device_get(leaks)
            if not finite:
                raise CheckFailed(
                    "causality",
                    f"{where}, with the parameters moved off their initial values, its outputs "
                    "or their gradients are not finite",
                )
            worst_value, worst_grad = max(worst_value, value[0]), max(worst_grad, grad[0])
            if value[0] > c.tolerance:
                ratio, change, b, t = value
                raise CheckFailed(
                    "causality",
                    f"{where}, the output at position {t} changed by {change:.3g} "
                    f"({ratio:.3g} of its size) when only inputs after position "
                    f"{int(cuts[b])} changed: the mixer reads the future",
                )
            if grad[0] > c.tolerance:
                ratio, size, b, s = grad
                raise CheckFailed(
                    "causality",
                    f"{where}, the output at position {int(cuts[b])} has gradient {size:.3g} "
                    f"with respect to later inputs (at position {s}; {ratio:.3g} times its "
                    f"largest gradient on earlier ones, {earlier[b]:.3g}): the backward pass "
                    "reads the future",
                )
    figures["causality"] = {"shapes": [list(s) for s in _causal_shapes(c)],
                            "worst_value_ratio": float(worst_value),
                            "worst_gradient_ratio": float(worst_grad)}  # fmt: skip


def _stage_gradients(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    batch, seq_len = _gradient_shape(c)
    shape = (batch, seq_len, c.d_model)
    probe = _probe(m, figures, shape)
    host = _moved_params(m, c)  # directions are added on the host: no compile per shape
    params = jax.device_put(host)
    rng = _random(c, 4)
    x, u, v_x = (_normal(rng, shape) for _ in range(3))
    no_future = np.full((batch,), seq_len - 1, np.int32)

    def output(params, x) -> np.ndarray:
        return np.asarray(probe(params, x, x, u, no_future, x, False)[0], np.float64)

    y, d_params, d_x, _ = jax.device_get(probe(params, x, x, u, no_future, x, True))
    noise = float(np.linalg.norm(u * y.astype(np.float64)))
    named, treedef = jax.tree_util.tree_flatten_with_path(host)
    leaves = [leaf for _, leaf in named]

    def along_input(step):
        return output(params, x + step * v_x), output(params, x - step * v_x)

    directions = [("the input", np.vdot(d_x.astype(np.float64), v_x), along_input)]
    for i, ((path, leaf), d_leaf) in enumerate(zip(named, jax.tree.leaves(d_params),
                                                   strict=True)):  # fmt: skip
        if not _floating(leaf):
            continue
        v = ((_rms(leaf) + _MOVE_ABSOLUTE) * _normal(rng, leaf.shape)).astype(leaf.dtype)

        def along_leaf(step, i=i, v=v):
            def shifted(sign):
                return jax.tree.unflatten(treedef, [*leaves[:i], leaves[i] + sign * step * v,
                                                    *leaves[i + 1 :]])  # fmt: skip

            return output(shifted(1.0), x), output(shifted(-1.0), x)

        analytic = np.vdot(np.asarray(d_leaf, np.float64), v)
        directions.append((jax.tree_util.keystr(path), analytic, along_leaf))
    worst = 0.0
    for name, analytic, evaluate in directions:
        analytic = float(analytic)
        errors = []
        for step in _FD_STEPS:
            y_plus, y_minus = evaluate(step)
            numeric = float(np.vdot(u, y_plus - y_minus)) / (2 * step)
            # a mismatch within the difference's rounding noise is no mismatch
            floor = _FD_NOISE / step * noise / c.gradient_tolerance
            error = abs(numeric - analytic) / max(abs(numeric), abs(analytic), floor)
            errors.append((error, numeric))
            if error <= c.gradient_tolerance:
                break
        error, numeric = min(errors)
        worst = max(worst, error)
        if error > c.gradient_tolerance:
            raise CheckFailed(
                "gradients",
                f"at B={batch}, T={seq_len}, along a random direction of {name} the backward "
                f"pass gives the derivative {analytic:.4g} where finite differences of the "
                f"forward pass give {numeric:.4g}: the gradient is not the forward pass's "
                "(a custom_vjp, or stop_gradient on something the output depends on?)",
            )
    figures["gradient_error"] = worst


def _forward_seconds(m: _Mixer, c: CheckConfig) -> dict[int, float]:
    """The least time of a few runs of the compiled forward at B = 1 and T = 2, 4 x
    cost_seq_len, run in turns so that a busy machine slows both alike."""
    runs = {}
    for mult in (2, 4):
        x = _normal(_random(c, 6, mult), (1, mult * c.cost_seq_len, c.d_model))
        forward = _compile(lambda p, x: jax.vjp(m.apply, p, x)[0], m.params, x)
        jax.block_until_ready(forward(m.params, x))
        runs[x.shape[1]] = (forward, x, [])
    for _ in range(_TIMING_RUNS):
        for forward, x, times in runs.values():
            start = time.perf_counter()
            jax.block_until_ready(forward(m.params, x))
            times.append(time.perf_counter() - start)
    return {seq_len: min(times) for seq_len, (_, _, times) in runs.items()}


def _stage_cost(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    flops = {}
    for mult in (1, 2, 4):
        seq_len = c.cost_seq_len * mult
        x = jax.ShapeDtypeStruct((1, seq_len, c.d_model), jnp.float32)
        try:
            flops[seq_len] = jaxpr_flops(jax.make_jaxpr(m.pullback)(m.params, x, x))
        except UnboundedLoop as e:
            raise CheckFailed(
                "cost",
                f"at T={seq_len} it runs {e}: its cost cannot be bounded; use lax.scan, or "
                "lax.fori_loop with Python int bounds",
            ) from None
    figures["flops"] = flops
    low_t, high_t = 2 * c.cost_seq_len, 4 * c.cost_seq_len
    low, high = flops[low_t], flops[high_t]
    exponent = math.log2(high / low) if low > 0 and high > 0 else 0.0
    figures["cost_exponent"] = exponent
    if exponent > c.max_cost_exponent:
        raise CheckFailed(
            "cost",
            f"the FLOPs of its forward + backward pass, loops counted by their trip counts, grow "
            f"as T^{exponent:.2f} from T={low_t} to {high_t} ({low:.3g} -> {high:.3g}): not "
            "sub-quadratic",
        )
    seconds = _forward_seconds(m, c)
    figures["seconds"] = seconds
    if seconds[high_t] < _TIMING_MIN_SECONDS:
        return
    time_exponent = math.log2(seconds[high_t] / seconds[low_t])
    figures["time_exponent"] = time_exponent
    if time_exponent > c.max_cost_exponent + _TIMING_MARGIN:
        raise CheckFailed(
            "cost",
            f"its compiled forward pass takes {seconds[low_t] * 1e3:.3g} ms at T={low_t} and "
            f"{seconds[high_t] * 1e3:.3g} ms at T={high_t}: time grows as "
            f"T^{time_exponent:.2f}, not sub-quadratic (work the FLOP count does not see)",
        )


def _stage_memory(m: _Mixer, c: CheckConfig, figures: dict) -> None:
    analysis = _training_step(m, c, figures).memory_analysis()
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


# The shape the program is traced at for its fingerprint: (batch, sequence length).
STRUCTURE_SHAPE = (1, 16)


def _program_fingerprint(m: _Mixer, c: CheckConfig) -> str:
    x = jnp.zeros((*STRUCTURE_SHAPE, c.d_model), jnp.float32)
    # The parameters are closed over, so they become constants in the order the program
    # first uses them, whatever the attributes holding them are called.
    closed = jax.make_jaxpr(lambda x: m.apply(m.params, x))(x)
    text = str(closed)
    # Sub-programs are printed under their function's name, which may be the candidate's;
    # variables are named in order of binding. Both are renamed in order of appearance.
    names: dict[str, str] = {}
    for match in re.finditer(r"(?:\bname=|\bjaxpr=|\blet )(\w+)|\b([a-z]+):", text):
        names.setdefault(match.group(1) or match.group(2), f"_{len(names)}")
    text = re.sub(r"\b\w+\b", lambda t: names.get(t.group(0), t.group(0)), text)
    digest = hashlib.sha256(text.encode())
    for const in closed.consts:  # the initial parameters (and any closed-over arrays)
        if jax.dtypes.issubdtype(getattr(const, "dtype", None), jax.dtypes.prng_key):
            const = jax.random.key_data(const)  # a dropout's (or other layer's) RNG key
        value = np.asarray(const)
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def _structure(m: _Mixer, c: CheckConfig) -> dict[str, str]:
    """{"jaxpr": fingerprint}, or {} when the program cannot be fingerprinted: the
    fingerprint only serves duplicate detection, and is no reason to fail a mixer."""
    try:
        return {"jaxpr": _program_fingerprint(m, c)}
    except Exception:
        return {}


def jaxpr_fingerprint(mixer_cls, config: CheckConfig) -> str:
    """A hash of the mixer's forward program traced at `STRUCTURE_SHAPE` with its initial
    parameters (seeded by `config.seed`), names normalised: equal for mixers that compute the
    same thing however their code names it, under the same `config` (width, heads, seed).
    Runs the candidate's code: only in the worker."""
    return _program_fingerprint(_stage_instantiate(mixer_cls, config, {}), config)


def check_mixer(
    mixer_cls, config: CheckConfig, *, describe: Callable[[BaseException], str] = str
) -> dict[str, Any]:
    """Runs the stages in order; returns {ok, stage, reason, figures, structure}, where
    structure is {"jaxpr": `jaxpr_fingerprint`} once the shapes stage passed (else {}).

    `describe` turns an unexpected exception (the candidate's own bug) into the reason.
    """
    figures: dict[str, Any] = {}
    structure: dict[str, str] = {}
    stage = "instantiate"
    try:
        m = _stage_instantiate(mixer_cls, config, figures)
        for name, run in (
            ("params", lambda: _stage_params(mixer_cls, m, config, figures)),
            ("shapes", lambda: _stage_shapes(m, config, figures)),
            ("shapes", lambda: structure.update(_structure(m, config))),
            ("finite", lambda: _stage_finite(m, config, figures)),
            ("causality", lambda: _stage_causality(m, config, figures)),
            ("gradients", lambda: _stage_gradients(m, config, figures)),
            ("cost", lambda: _stage_cost(m, config, figures)),
            ("memory", lambda: _stage_memory(m, config, figures)),
        ):
            stage = name
            run()
    except CheckFailed as e:
        return _report(False, e.stage, e.reason, figures, structure)
    except BaseException as e:
        return _report(False, stage, describe(e), figures, structure)
    return _report(True, None, None, figures, structure)


def _report(ok: bool, stage: str | None, reason: str | None, figures: dict,
            structure: dict) -> dict[str, Any]:  # fmt: skip
    public = {k: v for k, v in figures.items() if not k.startswith("_")}
    return {"ok": ok, "stage": stage, "reason": reason, "figures": public,
            "structure": structure}  # fmt: skip
