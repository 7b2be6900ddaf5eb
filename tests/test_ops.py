"""The linear-attention ops: the reference checked by hand, and the chunked path against it."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops_testing import assert_close, outputs_and_grads

import pallas_kernels as pk
from pallas_kernels.testing import random_inputs as make_inputs

OPS = tuple(pk.OPS)


def _numpy_recurrence(q, k, v, *, g=None, gk=None, beta=None, scale, h0=None):
    """A second, independent reference: plain Python loops over batch, head and time."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch, seq_len, heads, key_dim = q.shape
    o = np.zeros(v.shape)
    final = np.zeros((batch, heads, key_dim, v.shape[-1]))
    for b in range(batch):
        for h in range(heads):
            s = np.zeros((key_dim, v.shape[-1])) if h0 is None else np.array(h0[b, h], np.float64)
            for t in range(seq_len):
                if g is not None:
                    s = s * math.exp(float(g[b, t, h]))
                if gk is not None:
                    s = s * np.exp(np.asarray(gk[b, t, h], np.float64))[:, None]
                vt = v[b, t, h]
                if beta is not None:
                    vt = float(beta[b, t, h]) * (vt - s.T @ k[b, t, h])
                s = s + np.outer(k[b, t, h], vt)
                o[b, t, h] = s.T @ (scale * q[b, t, h])
            final[b, h] = s
    return o, final


def _scalars(*values):
    """Length-T sequences -> [1, T, 1, 1] arrays (B = H = K = V = 1)."""
    return [jnp.asarray(x, jnp.float32).reshape(1, -1, 1, 1) for x in values]


class TestReferenceByHand:
    """Tiny cases worked out on paper: the ground truth is itself checked, not only compared."""

    def test_linear_attention(self):
        q, k, v = _scalars([1.0, 1.0], [1.0, 1.0], [2.0, 3.0])
        o, s = pk.linear_attention(q, k, v, output_final_state=True, impl="recurrent")
        np.testing.assert_allclose(o.ravel(), [2.0, 5.0])  # S1 = 2, S2 = 2 + 3
        np.testing.assert_allclose(s.ravel(), [5.0])

    def test_default_scale_is_inverse_sqrt_key_dim(self):
        q = jnp.ones((1, 1, 1, 4))
        k = jnp.ones((1, 1, 1, 4))
        v = jnp.ones((1, 1, 1, 1))
        o, _ = pk.linear_attention(q, k, v, impl="recurrent")
        np.testing.assert_allclose(o.ravel(), [4 * 0.5])  # q.k = 4, scale = 4**-0.5

    def test_simple_gla(self):
        q, k, v = _scalars([1.0, 1.0], [1.0, 1.0], [2.0, 3.0])
        g = jnp.log(jnp.full((1, 2, 1), 0.5))
        o, _ = pk.simple_gla(q, k, v, g, impl="recurrent")
        np.testing.assert_allclose(o.ravel(), [2.0, 4.0], rtol=1e-6)  # 0.5 * 2 + 3

    def test_gla_decays_each_key_channel(self):
        q = jnp.asarray([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
        k = jnp.ones((1, 2, 1, 2))
        v = jnp.asarray([2.0, 3.0]).reshape(1, 2, 1, 1)
        gk = jnp.log(jnp.asarray([[0.5, 1.0], [0.5, 0.25]])).reshape(1, 2, 1, 2)
        o, s = pk.gla(q, k, v, gk, scale=1.0, output_final_state=True, impl="recurrent")
        # S1 = [2, 2]; S2 = [0.5 * 2 + 3, 0.25 * 2 + 3] = [4, 3.5]; o1 = S1[0], o2 = S2[1]
        np.testing.assert_allclose(o.ravel(), [2.0, 3.5], rtol=1e-6)
        np.testing.assert_allclose(s.ravel(), [4.0, 3.5], rtol=1e-6)

    def test_delta_rule(self):
        q, k, v = _scalars([1.0, 1.0], [1.0, 1.0], [2.0, 3.0])
        beta = jnp.asarray([0.5, 1.0]).reshape(1, 2, 1)
        o, _ = pk.delta_rule(q, k, v, beta, impl="recurrent")
        # v'1 = 0.5 (2 - 0) = 1, S1 = 1; v'2 = 1 (3 - 1) = 2, S2 = 3
        np.testing.assert_allclose(o.ravel(), [1.0, 3.0], rtol=1e-6)

    def test_gated_delta_rule_corrects_against_the_decayed_state(self):
        q, k, v = _scalars([1.0, 1.0], [1.0, 1.0], [2.0, 3.0])
        g = jnp.log(jnp.full((1, 2, 1), 0.5))
        beta = jnp.asarray([0.5, 1.0]).reshape(1, 2, 1)
        o, _ = pk.gated_delta_rule(q, k, v, g, beta, impl="recurrent")
        # S1 = 1; decayed 0.5; v'2 = 3 - 0.5 = 2.5; S2 = 0.5 + 2.5 = 3 (an undecayed read gives 2.5)
        np.testing.assert_allclose(o.ravel(), [1.0, 3.0], rtol=1e-6)

    @pytest.mark.parametrize("op", OPS)
    def test_matches_python_loops(self, op):
        args, h0 = make_inputs(op, (2, 9, 2, 5, 3), seed=3)
        extras = dict(zip(pk.OP_EXTRA_ARGS[op], args[3:], strict=True))
        o, s = pk.OPS[op](*args, initial_state=h0, output_final_state=True, impl="recurrent")
        o_np, s_np = _numpy_recurrence(*args[:3], **extras, scale=5**-0.5, h0=h0)
        np.testing.assert_allclose(o, o_np, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s, s_np, rtol=1e-5, atol=1e-5)


def _compare_chunk_to_recurrent(op, shape, *, dtype, chunk_size, with_state, seed=0):
    args, h0 = make_inputs(op, shape, dtype=dtype, seed=seed, with_state=with_state)
    ref_args = tuple(x.astype(jnp.float32) for x in args)  # same values, f32 ground truth
    expected = outputs_and_grads(op, ref_args, h0, impl="recurrent")
    actual = outputs_and_grads(op, args, h0, impl="chunk", chunk_size=chunk_size)
    assert actual[0].dtype == dtype and actual[1].dtype == jnp.float32
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
    assert_close(actual[0], expected[0], **tol, what=f"{op} output")
    assert_close(actual[1], expected[1], **tol, what=f"{op} final state")
    assert_close(actual[2], expected[2], **tol, what=f"{op} gradients")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("shape", "chunk_size", "with_state"),
    [
        ((2, 50, 2, 16, 16), 16, True),  # T not a multiple of the chunk
        ((1, 1, 2, 8, 8), 64, True),  # T = 1
        ((1, 70, 1, 48, 80), 32, False),  # odd head dims, no initial state
        ((1, 64, 2, 16, 8), 64, False),  # exactly one chunk
    ],
)
def test_chunk_matches_recurrent_f32(op, shape, chunk_size, with_state):
    _compare_chunk_to_recurrent(
        op, shape, dtype=jnp.float32, chunk_size=chunk_size, with_state=with_state
    )


@pytest.mark.parametrize("op", OPS)
def test_chunk_matches_recurrent_bf16(op):
    _compare_chunk_to_recurrent(
        op, (2, 45, 2, 16, 16), dtype=jnp.bfloat16, chunk_size=16, with_state=True
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    op=st.sampled_from(OPS),
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 80),
    heads=st.integers(1, 2),
    key_dim=st.integers(1, 20),
    value_dim=st.integers(1, 20),
    chunk_size=st.sampled_from([4, 8, 16, 24, 64]),
    with_state=st.booleans(),
)
@pytest.mark.slow
def test_chunk_matches_recurrent_any_shape(
    op, batch, seq_len, heads, key_dim, value_dim, chunk_size, with_state
):
    _compare_chunk_to_recurrent(
        op,
        (batch, seq_len, heads, key_dim, value_dim),
        dtype=jnp.float32,
        chunk_size=chunk_size,
        with_state=with_state,
    )


@pytest.mark.parametrize("op", ["simple_gla", "gla", "gated_delta_rule"])
def test_strong_decay_stays_finite(op):
    """Cumulative log decays of -2000 inside a chunk: no overflow in outputs or gradients."""
    args, h0 = make_inputs(op, (1, 40, 1, 8, 8), seed=1)
    decays = {3 + i for i, name in enumerate(pk.OP_EXTRA_ARGS[op]) if name in ("g", "gk")}
    args = tuple(jnp.full_like(x, -50.0) if i in decays else x for i, x in enumerate(args))
    expected = outputs_and_grads(op, args, h0, impl="recurrent")
    actual = outputs_and_grads(op, args, h0, impl="chunk", chunk_size=32)
    assert_close(actual, expected, rtol=1e-4, atol=1e-4, what=op)


@pytest.mark.parametrize("op", ["delta_rule", "gated_delta_rule"])
def test_delta_rule_with_identical_keys(op):
    """Perfectly correlated keys and beta = 1: the WY solve must stay exact (no Neumann blow-up)."""
    args, h0 = make_inputs(op, (1, 64, 1, 8, 8), seed=2)
    q, k, v, *extras = args
    k = jnp.broadcast_to(k[:, :1], k.shape)
    extras[-1] = jnp.ones_like(extras[-1])
    args = (q, k, v, *extras)
    expected = outputs_and_grads(op, args, h0, impl="recurrent")
    actual = outputs_and_grads(op, args, h0, impl="chunk", chunk_size=64)
    assert_close(actual, expected, rtol=1e-4, atol=1e-4, what=op)


def test_auto_is_chunk_on_cpu():
    args, h0 = make_inputs("gated_delta_rule", (1, 20, 1, 4, 4))
    auto = pk.gated_delta_rule(*args, initial_state=h0, impl="auto")
    chunk = pk.gated_delta_rule(*args, initial_state=h0, impl="chunk")
    np.testing.assert_array_equal(auto[0], chunk[0])


def test_works_under_jit_and_vmap():
    args, _ = make_inputs("delta_rule", (3, 20, 2, 4, 4))
    eager = pk.delta_rule(*args)[0]
    jitted = jax.jit(lambda *a: pk.delta_rule(*a)[0])(*args)
    mapped = jax.vmap(lambda *a: pk.delta_rule(*(x[None] for x in a))[0][0])(*args)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mapped, eager, rtol=1e-5, atol=1e-5)


class TestErrors:
    q = jnp.zeros((1, 4, 2, 8))
    v = jnp.zeros((1, 4, 2, 6))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"q must be \[B, T, H, K\]"):
            pk.linear_attention(self.q[0], self.q[0], self.v[0])

    def test_k_shape(self):
        with pytest.raises(ValueError, match="k must have q's shape"):
            pk.linear_attention(self.q, self.q[..., :4], self.v)

    def test_v_shape(self):
        with pytest.raises(ValueError, match=r"v must be \[B, T, H, V\]"):
            pk.linear_attention(self.q, self.q, self.v[:, :3])

    def test_dtype_mismatch(self):
        with pytest.raises(TypeError, match="share a dtype"):
            pk.linear_attention(self.q, self.q.astype(jnp.bfloat16), self.v)

    def test_integer_inputs(self):
        with pytest.raises(TypeError, match="floating-point"):
            pk.linear_attention(*(x.astype(jnp.int32) for x in (self.q, self.q, self.v)))

    def test_beta_shape(self):
        with pytest.raises(ValueError, match=r"beta must be \[B, T, H\] = \(1, 4, 2\)"):
            pk.delta_rule(self.q, self.q, self.v, jnp.zeros((1, 4)))

    def test_gk_shape(self):
        with pytest.raises(ValueError, match=r"gk must be \[B, T, H, K\]"):
            pk.gla(self.q, self.q, self.v, jnp.zeros((1, 4, 2)))

    def test_initial_state_shape(self):
        with pytest.raises(ValueError, match=r"initial_state must be \[B, H, K, V\]"):
            pk.linear_attention(self.q, self.q, self.v, initial_state=jnp.zeros((1, 2, 6, 8)))

    def test_unknown_impl(self):
        with pytest.raises(ValueError, match="impl must be one of"):
            pk.linear_attention(self.q, self.q, self.v, impl="fast")

    def test_bad_chunk_size(self):
        with pytest.raises(ValueError, match="chunk_size must be a positive int"):
            pk.linear_attention(self.q, self.q, self.v, impl="chunk", chunk_size=0)


def test_default_impl_overrides_auto_for_every_later_call():
    args, h0 = make_inputs("delta_rule", (1, 24, 1, 8, 8))
    assert pk.resolve_impl("auto", "delta_rule") == "chunk"  # nothing proven on CPU
    with pk.default_impl("recurrent"):
        assert pk.resolve_impl("auto", "delta_rule") == "recurrent"
        assert pk.resolve_impl("chunk", "delta_rule") == "chunk"  # an explicit impl wins
        auto = pk.delta_rule(*args, initial_state=h0, impl="auto")
        recurrent = pk.delta_rule(*args, initial_state=h0, impl="recurrent")
        np.testing.assert_array_equal(auto[0], recurrent[0])
    assert pk.resolve_impl("auto", "delta_rule") == "chunk"
    with pytest.raises(ValueError, match="impl must be one of"), pk.default_impl("triton"):
        pass


def test_pallas_runs_under_auto_only_where_a_device_run_proved_it():
    from pallas_kernels.tuning import pallas_proven

    assert "linear_attention" in pallas_proven("gpu", "NVIDIA H200")
    assert "gated_delta_rule" not in pallas_proven("gpu", "NVIDIA H200")
    assert pallas_proven("gpu", "NVIDIA A100-SXM4-40GB") == frozenset()
    assert pallas_proven("tpu", "TPU v5 lite") == frozenset()
