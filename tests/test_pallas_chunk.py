"""The Pallas kernels, interpreted on CPU, against the recurrent reference; and their lowering."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ops_testing import assert_close, outputs_and_grads

import pallas_kernels as pk
from pallas_kernels import pallas_chunk, tuning
from pallas_kernels.testing import random_inputs

OPS = tuple(pk.OPS)


def _pallas_op(op: str, backend: str, chunk_size: int, interpret: bool = True):
    """The kernel path with the op's own signature, on a chosen launch backend."""

    def fn(q, k, v, *extras, initial_state=None, output_final_state=False):
        named = dict(zip(pk.OP_EXTRA_ARGS[op], extras, strict=True))
        return pallas_chunk.pallas(
            q, k, v, named.get("g"), named.get("gk"), named.get("beta"), initial_state,
            scale=q.shape[-1] ** -0.5, output_final_state=output_final_state,
            chunk_size=chunk_size, backend=backend, interpret=interpret,
        )  # fmt: skip

    return fn


def _compare(op, shape, *, backend, dtype, chunk_size, with_state):
    args, h0 = random_inputs(op, shape, dtype=dtype, seed=4, with_state=with_state)
    ref_args = tuple(x.astype(jnp.float32) for x in args)
    expected = outputs_and_grads(op, ref_args, h0, impl="recurrent")
    actual = outputs_and_grads(op, args, h0, fn=_pallas_op(op, backend, chunk_size))
    assert actual[0].dtype == dtype and actual[1].dtype == jnp.float32
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
    assert_close(actual[0], expected[0], **tol, what=f"{backend} {op} output")
    assert_close(actual[1], expected[1], **tol, what=f"{backend} {op} final state")
    assert_close(actual[2], expected[2], **tol, what=f"{backend} {op} gradients")


@pytest.mark.parametrize("backend", pallas_chunk.BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    ("shape", "with_state"),
    [
        ((2, 40, 2, 16, 16), True),  # T not a multiple of the chunk
        ((1, 33, 1, 12, 20), False),  # odd head dims (padded to tiles on triton), no state
    ],
)
def test_kernels_match_recurrent_f32(backend, op, shape, with_state):
    _compare(op, shape, backend=backend, dtype=jnp.float32, chunk_size=16, with_state=with_state)


@pytest.mark.parametrize("backend", pallas_chunk.BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_kernels_match_recurrent_bf16(backend, op):
    _compare(
        op, (1, 40, 2, 16, 16), backend=backend, dtype=jnp.bfloat16, chunk_size=16,
        with_state=True,
    )  # fmt: skip


def test_public_impl_pallas_runs_interpreted_on_cpu():
    args, h0 = random_inputs("gated_delta_rule", (1, 50, 2, 8, 8))
    o, s = pk.gated_delta_rule(*args, initial_state=h0, output_final_state=True, impl="pallas")
    o_ref, s_ref = pk.gated_delta_rule(
        *args, initial_state=h0, output_final_state=True, impl="recurrent"
    )
    np.testing.assert_allclose(o, o_ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(s, s_ref, rtol=2e-4, atol=2e-4)


def test_unknown_platform_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="no kernels for platform 'metal'"):
        pallas_chunk.platform_backend("metal")
    assert pallas_chunk.platform_backend("gpu") == ("triton", False)
    assert pallas_chunk.platform_backend("tpu") == ("mosaic", False)
    assert pallas_chunk.platform_backend("cpu") == ("triton", True)


def test_triton_needs_power_of_two_chunks():
    args, _ = random_inputs("delta_rule", (1, 8, 1, 4, 4))
    with pytest.raises(ValueError, match="power-of-two chunk_size >= 16, got 24"):
        _pallas_op("delta_rule", "triton", 24)(*args)


@pytest.mark.parametrize(("backend", "platform"), [("triton", "cuda"), ("mosaic", "tpu")])
@pytest.mark.parametrize("op", ["gla", "gated_delta_rule"])
def test_kernels_lower_for_their_platform(backend, platform, op):
    """Compiles nothing, but runs Pallas's lowering to Triton / Mosaic IR, forward and backward,
    at a bf16 training shape: catches unsupported ops and block shapes without a device."""
    args, h0 = random_inputs(op, (1, 256, 2, 128, 128), dtype=jnp.bfloat16)
    fn = _pallas_op(op, backend, 64, interpret=False)

    def loss(*a):
        o, s = fn(*a, initial_state=h0, output_final_state=True)
        return jnp.sum(o.astype(jnp.float32)) + jnp.sum(s)

    grad = jax.grad(loss, argnums=tuple(range(len(args))))
    text = jax.jit(grad).trace(*args).lower(lowering_platforms=(platform,)).as_text()
    assert f"linear_attention_chunk_forward_{backend}" in text
    assert f"linear_attention_chunk_backward_{backend}" in text


def test_block_table():
    assert tuning.block_config("gpu", 64, 64).chunk_size == 64
    assert tuning.block_config("gpu", 128, 128).num_warps == 8
    # Two stages ask an H200 for 288 KiB of shared memory in the backward (227 KiB there).
    assert tuning.block_config("gpu", 128, 128).num_stages == 1
    assert tuning.block_config("tpu", 128, 128).chunk_size == 128
    with pytest.raises(ValueError, match="no Pallas block table for platform 'rocm'"):
        tuning.block_config("rocm", 64, 64)
