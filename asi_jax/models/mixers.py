"""Baseline token mixers, each following the candidate contract and its published layer design.

    Mixer(d_model, num_heads, *, rngs, **options)    x: [B, T, d_model] -> [B, T, d_model]

Every linear mixer runs on a `pallas_kernels` op (`impl` picks the implementation, "auto" by
default); softmax attention is the quadratic reference. Head size is d_model // num_heads for
queries, keys and values alike, so the baselines compare at nearly equal parameter counts.
`MIXERS` is the registry by name.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

import pallas_kernels as pk
from asi_jax.models.layers import (
    GatedRMSNorm,
    RMSNorm,
    ShortConv,
    dense,
    merge_heads,
    rotary,
    split_heads,
)


def _l2_normalize(x: Array, eps: float = 1e-6) -> Array:
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.sum(x32 * x32, -1, keepdims=True) + eps)).astype(x.dtype)


def _head_param(values: Array) -> nnx.Param:
    return nnx.Param(jnp.asarray(values, jnp.float32))


def _decay_params(num_heads: int, rng: jax.Array) -> tuple[nnx.Param, nnx.Param]:
    """Mamba2's decay parameterisation: A = -exp(A_log) with A in [1, 16], and a dt bias such
    that softplus(dt_bias) is log-uniform in [1e-3, 0.1]."""
    a_key, dt_key = jax.random.split(rng)
    a = jax.random.uniform(a_key, (num_heads,), minval=1.0, maxval=16.0)
    dt = jnp.exp(
        jax.random.uniform(dt_key, (num_heads,), minval=math.log(1e-3), maxval=math.log(0.1))
    )
    dt_bias = dt + jnp.log(-jnp.expm1(-dt))  # inverse softplus
    return _head_param(jnp.log(a)), _head_param(dt_bias)


class SoftmaxAttention(nnx.Module):
    """Causal multi-head softmax attention with rotary positions: the quadratic reference."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.qkv = dense(d_model, 3 * d_model, rngs=rngs)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))

    def __call__(self, x: Array) -> Array:
        q, k, v = (split_heads(t, self.num_heads) for t in jnp.split(self.qkv(x), 3, -1))
        o = jax.nn.dot_product_attention(rotary(q), rotary(k), v, is_causal=True)
        return self.out(merge_heads(o))


class LinearAttention(nnx.Module):
    """Linear attention (Katharopoulos et al. 2020): feature map elu + 1 on q and k, no decay;
    a per-head RMSNorm on the output replaces the softmax denominator, as in fla's layer."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        self.num_heads, self.impl = num_heads, impl
        self.qkv = dense(d_model, 3 * d_model, rngs=rngs)
        self.norm = RMSNorm(d_model // num_heads, rngs=rngs, axis_name=None)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))

    def __call__(self, x: Array) -> Array:
        q, k, v = (split_heads(t, self.num_heads) for t in jnp.split(self.qkv(x), 3, -1))
        q, k = jax.nn.elu(q) + 1.0, jax.nn.elu(k) + 1.0
        o, _ = pk.linear_attention(q, k, v, impl=self.impl)
        return self.out(merge_heads(self.norm(o)))


class Retention(nnx.Module):
    """RetNet's multi-scale retention: rotary q/k, a fixed decay per head
    gamma_h = 1 - 2^(-5 - h), per-head norm and a swish output gate."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        self.num_heads, self.impl = num_heads, impl
        self.qkv = dense(d_model, 3 * d_model, rngs=rngs)
        self.gate = dense(d_model, d_model, rngs=rngs)
        self.norm = RMSNorm(d_model // num_heads, rngs=rngs, axis_name=None)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))
        self.log_gamma = nnx.Variable(  # fixed, not trained
            jnp.log1p(-(2.0 ** (-5.0 - jnp.arange(num_heads, dtype=jnp.float32))))
        )

    def __call__(self, x: Array) -> Array:
        q, k, v = (split_heads(t, self.num_heads) for t in jnp.split(self.qkv(x), 3, -1))
        g = jnp.broadcast_to(self.log_gamma[...], (*x.shape[:2], self.num_heads))
        o, _ = pk.simple_gla(rotary(q), rotary(k), v, g, impl=self.impl)
        return self.out(merge_heads(self.norm(o)) * jax.nn.silu(self.gate(x)))


class GLA(nnx.Module):
    """Gated linear attention (Yang et al. 2024): per-key-channel decay
    log alpha = log_sigmoid(x W1 W2 + b) / 16 from a rank-16 projection, per-head norm and a
    swish output gate."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        self.num_heads, self.impl = num_heads, impl
        self.qkv = dense(d_model, 3 * d_model, rngs=rngs)
        self.decay_down = dense(d_model, 16, rngs=rngs, axes=("embed", None))
        self.decay_up = dense(16, d_model, rngs=rngs, axes=(None, "heads"), use_bias=True)
        self.gate = dense(d_model, d_model, rngs=rngs)
        self.norm = RMSNorm(d_model // num_heads, rngs=rngs, axis_name=None)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))

    def __call__(self, x: Array) -> Array:
        q, k, v = (split_heads(t, self.num_heads) for t in jnp.split(self.qkv(x), 3, -1))
        gk = jax.nn.log_sigmoid(self.decay_up(self.decay_down(x)).astype(jnp.float32)) / 16.0
        o, _ = pk.gla(q, k, v, split_heads(gk, self.num_heads), impl=self.impl)
        return self.out(merge_heads(self.norm(o)) * jax.nn.silu(self.gate(x)))


class Mamba2(nnx.Module):
    """Mamba2-style state-space mixer (Dao & Gu 2024, SSD) on simple_gla: a short conv on
    (x, B, C), data-dependent scalar decay g = A * dt per head, k = B, q = C shared by all
    heads, v = x * dt, a D skip connection and a gated RMSNorm with z. Expansion 1."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        self.num_heads, self.impl = num_heads, impl
        self.d_state = d_model // num_heads
        self.d_model = d_model
        self.in_proj = dense(d_model, 2 * d_model + 2 * self.d_state + num_heads, rngs=rngs)
        self.conv = ShortConv(d_model + 2 * self.d_state, rngs=rngs)
        self.a_log, self.dt_bias = _decay_params(num_heads, rngs.params())
        self.skip = _head_param(jnp.ones(num_heads))
        self.norm = GatedRMSNorm(d_model, rngs=rngs)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))

    def __call__(self, x: Array) -> Array:
        d, n = self.d_model, self.d_state
        z, xbc, dt = jnp.split(self.in_proj(x), [d, 2 * d + 2 * n], axis=-1)
        xs, b, c = jnp.split(self.conv(xbc), [d, d + n], axis=-1)
        dt = jax.nn.softplus(dt.astype(jnp.float32) + self.dt_bias[...])  # [B, T, H]
        g = -jnp.exp(self.a_log[...]) * dt
        heads = split_heads(xs, self.num_heads)
        shape = (*x.shape[:2], self.num_heads, n)
        q, k = jnp.broadcast_to(c[:, :, None], shape), jnp.broadcast_to(b[:, :, None], shape)
        v = (heads * dt[..., None]).astype(x.dtype)
        o, _ = pk.simple_gla(q, k, v, g, scale=1.0, impl=self.impl)
        y = o + heads * self.skip[...][:, None].astype(x.dtype)
        return self.out(self.norm(merge_heads(y), z))


class DeltaNet(nnx.Module):
    """DeltaNet (Yang et al. 2024): short convs with SiLU on q / k / v, L2-normalised q and k,
    beta = sigmoid(W_b x), the delta rule, per-head output norm and projection."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        self.num_heads, self.impl = num_heads, impl
        self.qkv = dense(d_model, 3 * d_model, rngs=rngs)
        self.convs = nnx.List([ShortConv(d_model, rngs=rngs) for _ in range(3)])
        self.beta = dense(d_model, num_heads, rngs=rngs)
        self.norm = RMSNorm(d_model // num_heads, rngs=rngs, axis_name=None)
        self.out = dense(d_model, d_model, rngs=rngs, axes=("heads", "embed"))

    def _qkv_beta(self, x: Array) -> tuple[Array, Array, Array, Array]:
        q, k, v = (
            split_heads(conv(t), self.num_heads)
            for conv, t in zip(self.convs, jnp.split(self.qkv(x), 3, -1), strict=True)
        )
        beta = jax.nn.sigmoid(self.beta(x).astype(jnp.float32))
        return _l2_normalize(q), _l2_normalize(k), v, beta

    def __call__(self, x: Array) -> Array:
        q, k, v, beta = self._qkv_beta(x)
        o, _ = pk.delta_rule(q, k, v, beta, impl=self.impl)
        return self.out(merge_heads(self.norm(o)))


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet (Yang et al. 2025): DeltaNet plus a data-dependent decay
    g = -exp(A_log) * softplus(W_a x + dt_bias) and a gated output norm."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, impl: str = "auto"):
        super().__init__(d_model, num_heads, rngs=rngs, impl=impl)
        self.decay = dense(d_model, num_heads, rngs=rngs)
        self.a_log, self.dt_bias = _decay_params(num_heads, rngs.params())
        self.gate = dense(d_model, d_model, rngs=rngs)
        self.norm = GatedRMSNorm(d_model // num_heads, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        q, k, v, beta = self._qkv_beta(x)
        dt = jax.nn.softplus(self.decay(x).astype(jnp.float32) + self.dt_bias[...])
        g = -jnp.exp(self.a_log[...]) * dt
        o, _ = pk.gated_delta_rule(q, k, v, g, beta, impl=self.impl)
        gate = split_heads(self.gate(x), self.num_heads)
        return self.out(merge_heads(self.norm(o, gate)))


MIXERS: dict[str, type[nnx.Module]] = {
    "softmax": SoftmaxAttention,
    "linear_attention": LinearAttention,
    "retnet": Retention,
    "gla": GLA,
    "mamba2": Mamba2,
    "deltanet": DeltaNet,
    "gated_deltanet": GatedDeltaNet,
}


def get_mixer(name: str) -> type[nnx.Module]:
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; baselines are {sorted(MIXERS)}")
    return MIXERS[name]


def resolve_mixer(spec: str) -> type[nnx.Module]:
    """A baseline by name, or the `Mixer` class of a Python file (your own, trusted code).

    Agents' candidates never come through here: they run only in the sandboxed worker.
    """
    if spec in MIXERS:
        return MIXERS[spec]
    path = Path(spec)
    if path.suffix != ".py":
        raise ValueError(f"mixer {spec!r} is neither a baseline {sorted(MIXERS)} nor a .py file")
    if not path.is_file():
        raise FileNotFoundError(f"mixer file {spec!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"user_mixer_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    mixer = getattr(module, "Mixer", None)
    if not isinstance(mixer, type) or not issubclass(mixer, nnx.Module):
        raise ValueError(f"{spec} must define `class Mixer(nnx.Module)`")
    return mixer
