"""Random op inputs in the ranges real layers produce, shared by the tests and the benchmark."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels import OP_EXTRA_ARGS


def random_inputs(
    op: str,
    shape: tuple[int, int, int, int, int],
    *,
    dtype=jnp.float32,
    seed: int = 0,
    with_state: bool = True,
) -> tuple[tuple[jax.Array, ...], jax.Array | None]:
    """Inputs for `op` at shape (B, T, H, K, V).

    Keys are unit-norm for the delta rules (as DeltaNet's L2 norm makes them), log decays lie
    in about (-1.5, -0.02) (log-sigmoid of N(2, 1)), beta in (0, 1). q, k, v are cast to
    `dtype`; decays, beta and the initial state stay float32, as layers usually keep them.

    Returns:
      ((q, k, v, *extras in OP_EXTRA_ARGS[op] order), initial_state [B, H, K, V] or None).
    """
    batch, seq_len, heads, key_dim, value_dim = shape
    keys = jax.random.split(jax.random.PRNGKey(seed), 7)
    q = jax.random.normal(keys[0], (batch, seq_len, heads, key_dim))
    k = jax.random.normal(keys[1], (batch, seq_len, heads, key_dim))
    v = jax.random.normal(keys[2], (batch, seq_len, heads, value_dim))
    if "beta" in OP_EXTRA_ARGS[op]:
        k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    extras = {
        "g": lambda: jax.nn.log_sigmoid(jax.random.normal(keys[3], q.shape[:3]) + 2.0),
        "gk": lambda: jax.nn.log_sigmoid(jax.random.normal(keys[4], q.shape) + 2.0),
        "beta": lambda: jax.nn.sigmoid(jax.random.normal(keys[5], q.shape[:3])),
    }
    h0 = jax.random.normal(keys[6], (batch, heads, key_dim, value_dim)) if with_state else None
    args = tuple(x.astype(dtype) for x in (q, k, v))
    return args + tuple(extras[name]() for name in OP_EXTRA_ARGS[op]), h0
