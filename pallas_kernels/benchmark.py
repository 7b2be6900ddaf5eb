"""Timing of the linear-attention ops: time per call after compile, tokens/s and FLOP/s.

Besides our impls ("recurrent", "chunk", "pallas"), "fla" times flash-linear-attention's
Triton chunk kernels on the same inputs when PyTorch and fla are importable with CUDA, so the
JAX and PyTorch kernels compare in one run.

FLOP/s are reported against one nominal count per op and shape (the chunked algorithm's
matmul FLOPs at chunk size 64, backward counted as twice the forward), the same for every
impl, so a higher FLOP/s always means a faster call and the roofline fraction is comparable.
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels as pk
from pallas_kernels.pallas_chunk import pallas
from pallas_kernels.testing import random_inputs
from pallas_kernels.tuning import BlockConfig

NOMINAL_CHUNK = 64
FLA = "fla"

# fla's chunk entry points for our ops; every one takes (q, k, v, *extras) in our order.
_FLA_FUNCTIONS = {
    "linear_attention": ("fla.ops.linear_attn", "chunk_linear_attn", {"normalize": False}),
    "simple_gla": ("fla.ops.simple_gla", "chunk_simple_gla", {}),
    "gla": ("fla.ops.gla", "chunk_gla", {}),
    "delta_rule": ("fla.ops.delta_rule", "chunk_delta_rule", {}),
    "gated_delta_rule": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", {}),
}


# Dense bf16 tensor-core peaks (FLOP/s) by device kind, for the roofline column.
def fla_available() -> bool:
    """True when PyTorch with CUDA and flash-linear-attention can run here."""
    try:
        torch = importlib.import_module("torch")
        importlib.import_module("fla.ops")
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    seq_len: int
    heads: int
    key_dim: int
    value_dim: int


@dataclasses.dataclass(frozen=True)
class Timing:
    op: str
    impl: str
    mode: str  # "fwd" or "fwd_bwd"
    shape: Shape
    dtype: str
    seconds: float  # median over the timed calls
    compile_seconds: float
    tokens_per_second: float
    nominal_flops: float
    flops_per_second: float
    # ||out - ref|| / ||ref|| against the float32 recurrence on the same inputs (the largest
    # over the gradients in fwd_bwd); None when not checked.
    relative_error: float | None = None
    # Why the impl did not run (its error's first line); the figures above are then NaN.
    failure: str | None = None


def nominal_flops(op: str, shape: Shape, *, backward: bool) -> float:
    """Matmul FLOPs of the chunked algorithm at chunk size 64 (see module docstring)."""
    c, k, v = NOMINAL_CHUNK, shape.key_dim, shape.value_dim
    per_chunk = 2 * c * c * k + 2 * c * c * v  # scores, scores @ values
    per_chunk += 2 * c * k * v * 2  # queries @ state, keys^T @ values into the state
    if op in ("delta_rule", "gated_delta_rule"):
        per_chunk += 2 * c * c * k  # key Gram matrix
        per_chunk += c * c * (k + v)  # triangular solve for u and w
        per_chunk += 2 * c * k * v + 2 * c * k * k  # w @ state, the state transition
    chunks = shape.batch * shape.heads * -(-shape.seq_len // c)
    return float(per_chunk * chunks * (3 if backward else 1))


def impl_label(impl: str, block: BlockConfig | None) -> str:
    """The name a timing carries: `impl`, or for a Pallas run at `block` "pallas
    C/warps/stages"."""
    if block is None:
        return impl
    return f"pallas {block.chunk_size}/{block.num_warps}/{block.num_stages}"


def parse_block(text: str) -> BlockConfig:
    """CHUNK:WARPS:STAGES, e.g. "64:8:1", as a BlockConfig."""
    try:
        chunk_size, num_warps, num_stages = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"a block is CHUNK:WARPS:STAGES (three ints), got {text!r}") from None
    if min(chunk_size, num_warps, num_stages) < 1:
        raise ValueError(f"a block's numbers must be positive, got {text!r}")
    return BlockConfig(chunk_size, num_warps, num_stages)


def jax_callable(
    op: str, impl: str, mode: str, chunk_size: int | None, block: BlockConfig | None = None
) -> Callable:
    """A jitted function of (q, k, v, *extras) running the op forward, or forward and backward.

    With `block`, the Pallas kernels run at that block config instead of the tuning table's.
    """
    fn = pk.OPS[op]

    def forward(*args):
        if block is None:
            return fn(*args, impl=impl, chunk_size=chunk_size)[0]
        q, k, v = args[:3]
        extras = dict(zip(pk.OP_EXTRA_ARGS[op], args[3:], strict=True))
        gates = (extras.get("g"), extras.get("gk"), extras.get("beta"))
        scale = q.shape[-1] ** -0.5
        return pallas(q, k, v, *gates, None, scale=scale, output_final_state=False, block=block)[0]

    if mode == "fwd":
        return jax.jit(forward)

    def loss(*args):
        return jnp.sum(forward(*args).astype(jnp.float32))

    return jax.jit(jax.grad(loss, argnums=tuple(range(3 + len(pk.OP_EXTRA_ARGS[op])))))


def relative_error(outputs: Sequence, reference: Sequence) -> float:
    """The largest ||out - ref|| / ||ref|| over matching arrays, computed in float64; each
    output is cut to its reference's leading (batch) size (see `reference`)."""
    worst = 0.0
    for out, ref in zip(outputs, reference, strict=True):
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out[: ref.shape[0]], np.float64)
        if not np.all(np.isfinite(out)):
            return float("inf")
        worst = max(worst, float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30)))
    return worst


def reference(op: str, mode: str, args: Sequence) -> list:
    """The float32 recurrence's output (fwd) or gradients (fwd_bwd) on the first batch element
    of `args`, upcast. One element, because the recurrence's backward keeps every step's state
    (at B=8, T=4096, H=16, K=V=128 it asked for 97.5 GiB); every batch element is independent,
    and the sum's gradient splits over them, so the first one's figures are exact references.
    """
    first = [x[:1].astype(jnp.float32) for x in args]
    out = jax_callable(op, "recurrent", mode, None)(*first)
    return [out] if mode == "fwd" else list(out)


def time_call(
    fn: Callable, args: Sequence, *, warmup: int, iters: int, sync: Callable = jax.block_until_ready
) -> tuple[float, float]:
    """(median seconds per call, seconds of the first call, which includes compilation)."""
    start = time.perf_counter()
    sync(fn(*args))
    first = time.perf_counter() - start
    for _ in range(warmup):
        sync(fn(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        sync(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), first


def bench_jax(
    op: str,
    impl: str,
    mode: str,
    shape: Shape,
    dtype: str,
    *,
    chunk_size: int | None = None,
    block: BlockConfig | None = None,
    warmup: int = 2,
    iters: int = 10,
    expected: Sequence | None = None,
) -> Timing:
    """Times `impl` (at `block`, see `jax_callable`); with `expected` (see `reference`) also
    records its relative error."""
    args, _ = random_inputs(op, dataclasses.astuple(shape), dtype=jnp.dtype(dtype))
    fn = jax_callable(op, impl, mode, chunk_size, block)
    seconds, first = time_call(fn, args, warmup=warmup, iters=iters)
    error = None
    if expected is not None:
        out = fn(*args)
        error = relative_error([out] if mode == "fwd" else out, expected)
    return make_timing(op, impl_label(impl, block), mode, shape, dtype, seconds, first, error)


def bench_fla(
    op: str,
    mode: str,
    shape: Shape,
    dtype: str,
    *,
    warmup: int = 2,
    iters: int = 10,
    expected: Sequence | None = None,
) -> Timing:
    """flash-linear-attention's Triton chunk kernel for `op` on the same inputs as ours."""
    torch = importlib.import_module("torch")
    module, name, kwargs = _FLA_FUNCTIONS[op]
    fn = getattr(importlib.import_module(module), name)
    args, _ = random_inputs(op, dataclasses.astuple(shape), dtype=jnp.dtype(dtype))
    torch_dtype = getattr(torch, dtype)
    tensors = [
        torch.from_numpy(np.array(x, np.float32)).to(
            "cuda", torch_dtype if i < 3 else torch.float32
        )
        for i, x in enumerate(args)
    ]
    for t in tensors:
        t.requires_grad_(mode == "fwd_bwd")

    def call():
        o = fn(*tensors, **kwargs)[0]
        if mode == "fwd_bwd":
            o.float().sum().backward()
        return o

    seconds, first = time_call(
        call, (), warmup=warmup, iters=iters, sync=lambda _: torch.cuda.synchronize()
    )
    error = None
    if expected is not None:
        for t in tensors:
            t.grad = None
        o = call()
        outs = [o] if mode == "fwd" else [t.grad for t in tensors]
        error = relative_error([x.detach().float().cpu().numpy() for x in outs], expected)
    return make_timing(op, FLA, mode, shape, dtype, seconds, first, error)


def make_timing(
    op: str,
    impl: str,
    mode: str,
    shape: Shape,
    dtype: str,
    seconds: float,
    first: float,
    error: float | None = None,
) -> Timing:
    flops = nominal_flops(op, shape, backward=mode == "fwd_bwd")
    return Timing(
        op=op,
        impl=impl,
        mode=mode,
        shape=shape,
        dtype=dtype,
        seconds=seconds,
        compile_seconds=max(first - seconds, 0.0),
        tokens_per_second=shape.batch * shape.seq_len / seconds,
        nominal_flops=flops,
        flops_per_second=flops / seconds,
        relative_error=error,
    )


def format_table(timings: Sequence[Timing], peak: float | None = None) -> str:
    """One row per timing: speed-up over the slowest impl of its (op, mode), time relative to
    fla's where fla ran, and the fraction of `peak` FLOP/s where a peak is known. An impl that
    failed gets its reason instead of figures."""
    ran = [t for t in timings if t.failure is None]
    slowest: dict[tuple[str, str], float] = {}
    fla: dict[tuple[str, str], float] = {}
    for t in ran:
        key = (t.op, t.mode)
        slowest[key] = max(slowest.get(key, 0.0), t.seconds)
        if t.impl == FLA:
            fla[key] = t.seconds
    width = max([11, *(len(t.impl) + 1 for t in timings)])
    header = f"{'op':<18}{'mode':<9}{'impl':<{width}}{'ms':>10}{'Mtok/s':>10}{'GFLOP/s':>10}"
    header += f"{'speedup':>9}"
    header += f"{'vs fla':>9}" if fla else ""
    header += f"{'% peak':>8}" if peak else ""
    checked = any(t.relative_error is not None for t in ran)
    header += f"{'rel err':>10}" if checked else ""
    rows = [header, "-" * len(header)]
    for t in timings:
        key = (t.op, t.mode)
        row = f"{t.op:<18}{t.mode:<9}{t.impl:<{width}}"
        if t.failure is not None:
            rows.append(f"{row}  fails: {t.failure[:100]}")
            continue
        row += (
            f"{t.seconds * 1e3:>10.2f}{t.tokens_per_second / 1e6:>10.3f}"
            f"{t.flops_per_second / 1e9:>10.1f}{slowest[key] / t.seconds:>8.2f}x"
        )
        if fla:
            row += f"{t.seconds / fla[key]:>8.2f}x" if key in fla else f"{'-':>9}"
        if peak:
            row += f"{100 * t.flops_per_second / peak:>7.1f}%"
        if checked:
            error = t.relative_error
            row += f"{error:>10.1e}" if error is not None else f"{'-':>10}"
        rows.append(row)
    return "\n".join(rows)


def run(
    ops: Sequence[str],
    impls: Sequence[str],
    modes: Sequence[str],
    shape: Shape,
    dtype: str,
    *,
    chunk_size: int | None = None,
    blocks: Sequence[BlockConfig] = (),
    warmup: int = 2,
    iters: int = 10,
    check: bool = False,
    log: Callable[[str], None] = print,
) -> list[Timing]:
    """Times every (op, mode, impl) combination; logs one line per timing as it finishes.

    `impls` may include "fla" (see `fla_available`). With `blocks`, "pallas" runs once per
    block config instead of at the tuning table's. With `check`, every impl's output (or
    gradients) is also compared with the float32 recurrence on the same inputs. An impl that
    raises (a kernel that does not launch, say) is recorded as failed and the rest still run.
    """
    for name, values, allowed in (
        ("ops", ops, tuple(pk.OPS)),
        ("impls", impls, (*pk.IMPLS, FLA)),
        ("modes", modes, ("fwd", "fwd_bwd")),
    ):
        unknown = [x for x in values if x not in allowed]
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; choose from {allowed}")
    timings = []
    for op in ops:
        for mode in modes:
            expected = None
            if check:
                args, _ = random_inputs(op, dataclasses.astuple(shape), dtype=jnp.dtype(dtype))
                expected = [np.asarray(x) for x in reference(op, mode, args)]
            for impl in impls:
                for block in (blocks or [None]) if impl == "pallas" else [None]:
                    t = _bench_or_failure(
                        op, impl, mode, shape, dtype,
                        chunk_size=chunk_size, block=block, warmup=warmup, iters=iters,
                        expected=expected,
                    )  # fmt: skip
                    log(f"{op} {mode} {t.impl}: {_summary(t)}")
                    timings.append(t)
    return timings


def _bench_or_failure(
    op: str,
    impl: str,
    mode: str,
    shape: Shape,
    dtype: str,
    *,
    chunk_size: int | None,
    block: BlockConfig | None,
    warmup: int,
    iters: int,
    expected: Sequence | None,
) -> Timing:
    """`bench_fla` or `bench_jax`; a failing impl gives a Timing that carries its error."""
    timing = dict(warmup=warmup, iters=iters, expected=expected)
    try:
        if impl == FLA:
            return bench_fla(op, mode, shape, dtype, **timing)
        return bench_jax(op, impl, mode, shape, dtype, chunk_size=chunk_size, block=block, **timing)
    except Exception as e:  # a kernel that fails to launch is a result, not a crash
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = f"{type(e).__name__}: {lines[0] if lines else ''}"
        nan = float("nan")
        return dataclasses.replace(
            make_timing(op, impl_label(impl, block), mode, shape, dtype, nan, nan),
            failure=reason,
        )


def _summary(t: Timing) -> str:
    if t.failure is not None:
        return f"fails: {t.failure}"
    error = "" if t.relative_error is None else f", rel err {t.relative_error:.1e}"
    return f"{t.seconds * 1e3:.2f} ms{error}"
