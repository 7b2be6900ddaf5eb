"""Building blocks shared by the model and the baseline mixers.

Parameters carry logical axis names (`nnx.with_partitioning`): "embed" for the model width,
"heads" for per-head projections, "mlp" for the MLP hidden width, "vocab" for the vocabulary.
`asi_jax.train.sharding` maps these to mesh axes in one table; nothing here mentions devices.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

_DEFAULT_INIT = nnx.initializers.lecun_normal()


def dense(
    d_in: int,
    d_out: int,
    *,
    rngs: nnx.Rngs,
    axes: tuple[str | None, str | None] = ("embed", "heads"),
    use_bias: bool = False,
    init=_DEFAULT_INIT,
) -> nnx.Linear:
    """A bias-free Linear whose kernel [d_in, d_out] carries the logical axis names `axes`."""
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=use_bias,
        kernel_init=nnx.with_partitioning(init, axes),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """RMSNorm whose statistics are float32 whatever the compute dtype; returns x's dtype."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, axis_name: str | None = "embed"):
        self.norm = nnx.RMSNorm(
            dim,
            epsilon=1e-6,
            dtype=jnp.float32,
            scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), (axis_name,)),
            rngs=rngs,
        )

    def __call__(self, x: Array) -> Array:
        return self.norm(x.astype(jnp.float32)).astype(x.dtype)


class GatedRMSNorm(nnx.Module):
    """norm(x) * silu(gate) over the last axis: the output gate of Mamba2 and Gated DeltaNet."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm = RMSNorm(dim, rngs=rngs, axis_name=None)

    def __call__(self, x: Array, gate: Array) -> Array:
        return self.norm(x) * jax.nn.silu(gate)


class ShortConv(nnx.Module):
    """Depthwise causal 1-D convolution over time followed by SiLU: x [B, T, D] -> [B, T, D].

    The short convolutions that DeltaNet, Gated DeltaNet and Mamba2 put on q / k / v give
    each position a little local context before the linear recurrence.
    """

    def __init__(self, dim: int, *, kernel_size: int = 4, rngs: nnx.Rngs):
        self.conv = nnx.Conv(
            dim,
            dim,
            kernel_size=(kernel_size,),
            feature_group_count=dim,
            padding="CAUSAL",
            use_bias=False,
            kernel_init=nnx.with_partitioning(_DEFAULT_INIT, (None, None, "heads")),
            rngs=rngs,
        )

    def __call__(self, x: Array) -> Array:
        return jax.nn.silu(self.conv(x))


def rotary(x: Array, *, base: float = 10_000.0) -> Array:
    """Rotary position embedding on x [B, T, H, D] (D even), computed in float32."""
    _, seq_len, _, dim = x.shape
    freqs = base ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [D/2]
    angles = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * freqs  # [T, D/2]
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def split_heads(x: Array, num_heads: int) -> Array:
    """[B, T, H * D] -> [B, T, H, D]."""
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def merge_heads(x: Array) -> Array:
    """[B, T, H, D] -> [B, T, H * D]."""
    return x.reshape(*x.shape[:-2], math.prod(x.shape[-2:]))
