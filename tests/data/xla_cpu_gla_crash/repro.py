"""XLA:CPU segfault running a rank-7 f32 multiply-reduce fusion that it hands to YNNPACK.

Pure jax.numpy, no project imports. Run it with the project's venv:

    .venv/bin/python tests/data/xla_cpu_gla_crash/repro.py            # the GLA pattern
    .venv/bin/python tests/data/xla_cpu_gla_crash/repro.py upstream   # jax-ml/jax#40412's
    .venv/bin/python tests/data/xla_cpu_gla_crash/repro.py hlo \
        tests/data/xla_cpu_gla_crash/before_optimizations.hlo.txt       # the HLO text itself

Either prints "ok" or dies with SIGSEGV (exit code 139). Found on:

  jax 0.10.2, jaxlib 0.10.2, numpy 2.4.6, Python 3.11.7, Linux 6.18 (KVM guest), 2 vCPUs
  CPU "AMD EPYC" (family 23, model 1, stepping 2: Zen 1), flags include avx avx2 fma f16c
  bmi2 sha_ni, and no avx512*. The GLA gradient this came from was reported to pass on Intel
  AVX-512 machines (not re-checked here; upstream sees SIGSEGV on some x86-64 CPUs and a
  hang on others, which fits an out-of-bounds write, below).

What crashes: not the compiler. `jit(...).lower(...).compile()` succeeds; the fault is while
*executing* the `__ynn_fusion` custom fusion below, on an Eigen worker thread, so the Python
traceback lands wherever the main thread was (in the GLA case, compiling the next module).
Backtrace (gdb -batch -ex run -ex bt --args .venv/bin/python repro.py), top frames:

  Thread "tf_XLAEigen" received signal SIGSEGV
  #0 slinky::internal::can_fuse<slinky::buffer<void const, 8ul>>(long, long,
         slinky::raw_buffer const&, slinky::buffer<void const, 8ul> const&)
  #1 slinky::fuse_contiguous_dims<slinky::buffer<void const, 8ul>>(...)
  #2 ... ynn::(anonymous namespace)::make_transpose_impl(int, std::vector<int>)::$_0 ...
  #3 slinky::(anonymous namespace)::evaluator::eval_non_inlined(slinky::stmt const&)
     ... slinky::evaluate ... xla::cpu::SlinkyThreadPool::Impl::WorkOnTask ...

The optimized HLO (cpu_after_optimizations.hlo.txt, next to this file) is one fusion:

  %ynn_fusion = f32[2,4,1,4,16,16] fusion(x, m), kind=kCustom, "__ynn_fusion":
      multiply(broadcast(m: f32[4,4]) dims {3,5}, x: f32[2,4,1,4,16,4,16]) -> reduce dim 5

Trigger, as far as bisected here: rank >= 7 operands with a size-1 axis (not the reduced
one), f32, big enough for XLA's cost model to pick YNNPACK. No rank-6 shape tried here
crashed; dropping the size-1 axis, or writing x * m instead of m * x, made it pass. Known
upstream: jax-ml/jax#39257 (rank-7/8 broadcast-multiply-reduce, slinky + ynn transpose in the
backtrace) and jax-ml/jax#40412 (rank-7 f32 reduce with a size-1 axis; its reproducer, the
`upstream` case here, crashes on this machine too), both closed. A comment on #39257 points
to the fix, google/XNNPACK 53a1797ba ("Fix crash due to not allowing internal extra
dimensions"): the slinky buffers above hold YNN_MAX_TENSOR_RANK = 8 dims while YNNPACK adds
internal ones. It is newer than jaxlib 0.10.2.

Workaround by flag: XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce (or `=` to turn
YNN fusions off) makes both cases pass. The project instead keeps every array in
pallas_kernels/chunk.py at rank <= 6 (see `_scores_per_key_decay`), since XLA flags are
process-wide and cannot be set from the library.

Where it came from: the jitted gradient of `gla(..., impl="chunk")` at B=2, H=4, K=V=8 and
T=16/37/64 (one chunk of 64, so N=1; T=100, N=2, passed) had exactly this fusion: the transpose of
`eye[a, b'] * diag[B, H, N, a, i, j]` broadcast to the [B, H, N, a, i, b', j] score blocks.
gla_grad_fusion.hlo.txt is that fusion as XLA printed it.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def gla_pattern():
    """The sub-chunk block-diagonal pick from pallas_kernels/chunk.py, transposed."""
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(2, 4, 1, 4, 16, 4, 16), jnp.float32)  # [B, H, N, a, i, b', j]
    m = jnp.asarray(np.eye(4), jnp.float32)  # [a, b']
    return jax.jit(lambda x, m: (m[:, None, :, None] * x).sum(5)), (x, m)


def upstream():
    """jax-ml/jax#40412's reproducer: no broadcast at all, just a size-1 axis at rank 7."""
    rng = np.random.RandomState(0)
    shape = (3, 1, 2, 2, 8, 8, 8)
    u = jnp.asarray(rng.randn(*shape), jnp.float32)
    v = jnp.asarray(rng.randn(*shape), jnp.float32)
    return jax.jit(lambda a, b: jnp.sum(a * b, axis=3)), (u, v)


def run_hlo_text(path):
    """Compiles an HLO text module on CPU (jaxlib internals) and runs it on random inputs."""
    import re

    from jax._src.lib import xla_client as xc

    text = Path(path).read_text()
    module = xc.hlo.hlo_module_from_text(text)
    stablehlo = xc._xla.mlir.hlo_to_stablehlo(module.as_serialized_hlo_module_proto())
    devices = xc.DeviceList(tuple(jax.devices("cpu")[:1]))
    exe = jax.devices("cpu")[0].client.compile_and_load(stablehlo, devices, xc.CompileOptions())
    entry = text[text.index("ENTRY") :]
    params = sorted(
        re.findall(r"= f32\[([\d,]*)\]\S* parameter\((\d+)\)", entry), key=lambda p: int(p[1])
    )
    rng = np.random.RandomState(0)
    args = [
        jax.device_put(rng.randn(*map(int, dims.split(","))).astype(np.float32))
        for dims, _ in params
    ]
    print(f"jax {jax.__version__}; compiled {path}", flush=True)
    out = exe.execute(args)  # SIGSEGV here on the affected setup
    print("ok", [float(np.asarray(o).sum()) for o in out])


if __name__ == "__main__":
    if sys.argv[1:2] == ["hlo"]:
        run_hlo_text(sys.argv[2])
        sys.exit()
    fn, args = {"gla": gla_pattern, "upstream": upstream}[(sys.argv[1:] or ["gla"])[0]]()
    hlo = fn.lower(*args).compile().as_text()
    print(f"jax {jax.__version__}; YNN fusion: {'__ynn_fusion' in hlo}", flush=True)
    out = fn(*args).block_until_ready()  # SIGSEGV here on the affected setup
    print("ok", float(out.sum()))
