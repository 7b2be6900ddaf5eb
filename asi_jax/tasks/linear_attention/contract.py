"""What a mixer candidate may import and reach, and what it defines (the policy's contract).

The modules are numeric libraries whose import initialises no JAX backend, chosen from their
listings of submodules and module-valued attributes (jax 0.10, flax 0.12). Left out on
purpose, among others: jax.stages, jax.version, jax.debug, jax.experimental, jax.profiler,
jax.monitoring, jax.extend, jax.ffi, jax.core, jax._src; flax.nnx.graph and nnx's other
internals; einops.einops; typing's own imports (typing.sys); pallas_kernels.benchmark,
.testing and .tuning.
"""

from __future__ import annotations

from asi_jax.candidates.policy import Contract

ALLOWED_IMPORTS = frozenset(
    {
        "jax", "jax.numpy", "jax.nn", "jax.lax", "flax.nnx", "einops", "math", "functools",
        "typing", "pallas_kernels",
    }
)  # fmt: skip
ALLOWED_MODULES = ALLOWED_IMPORTS | frozenset(
    {
        "jax.numpy.fft", "jax.numpy.linalg", "jax.nn.initializers", "jax.lax.linalg",
        "jax.random", "jax.tree", "jax.tree_util", "jax.typing", "jax.dtypes", "jax.image",
        "jax.ops", "jax.scipy", "jax.scipy.special", "jax.scipy.signal", "jax.scipy.linalg",
        "jax.scipy.fft", "flax.nnx.nn.initializers", "pallas_kernels.ops",
    }
)  # fmt: skip

MIXER = Contract(
    imports=ALLOWED_IMPORTS,
    modules=ALLOWED_MODULES,
    symbol="Mixer",
    symbol_kind="class",
    described="`class Mixer(nnx.Module)`",
)
