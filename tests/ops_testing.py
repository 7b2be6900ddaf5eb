"""Comparisons shared by the ops tests (and later the Pallas kernel tests)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels as pk


def outputs_and_grads(op: str, args: tuple, h0, *, fn=None, **kwargs):
    """(o, final_state, grads of a fixed random projection of both w.r.t. every input).

    `fn` (default: the public op) takes the op's arguments and keywords.
    """
    fn = fn or pk.OPS[op]

    def loss(args, h0):
        o, s = fn(*args, initial_state=h0, output_final_state=True, **kwargs)
        wo = jax.random.normal(jax.random.PRNGKey(1), o.shape)
        ws = jax.random.normal(jax.random.PRNGKey(2), s.shape)
        return jnp.sum(o.astype(jnp.float32) * wo) + jnp.sum(s * ws), (o, s)

    argnums = (0, 1) if h0 is not None else 0
    grads, (o, s) = jax.grad(loss, argnums=argnums, has_aux=True)(args, h0)
    return o, s, grads


def assert_close(actual, expected, *, rtol: float, atol: float, what: str = "") -> None:
    """Compares pytrees leaf by leaf in float32, scaling atol by each leaf's magnitude."""
    leaves_a, tree_a = jax.tree.flatten(actual)
    leaves_e, tree_e = jax.tree.flatten(expected)
    assert tree_a == tree_e, f"{what}: structures differ: {tree_a} vs {tree_e}"
    for i, (a, e) in enumerate(zip(leaves_a, leaves_e, strict=True)):
        a = np.asarray(a, np.float32)
        e = np.asarray(e, np.float32)
        assert np.all(np.isfinite(a)), f"{what} leaf {i}: non-finite values"
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale, err_msg=f"{what} leaf {i}")
