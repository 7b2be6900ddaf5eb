"""An ordinary candidate: a Hyena-style long convolution, computed with FFTs.

The policy once refused much of what it does: `from __future__ import annotations`, `__all__`,
einops, a `__main__` block. It also uses nnx.LayerNorm, nnx.Dropout and a helper module.
"""

from __future__ import annotations

import math

import einops
import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Mixer"]


class ImplicitFilter(nnx.Module):
    """Hyena's implicit filter: an MLP of sinusoidal positions, times a decaying window."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs, features: int = 8, hidden: int = 32):
        self.features = features
        self.mlp_in = nnx.Linear(2 * features, hidden, rngs=rngs)
        self.mlp_out = nnx.Linear(hidden, channels, rngs=rngs)
        # decay rates per channel spread over time scales from ~2 to ~100 positions
        self.log_rate = nnx.Param(jnp.linspace(math.log(0.5), math.log(0.01), channels))

    def __call__(self, length: int) -> jax.Array:
        t = jnp.arange(length, dtype=jnp.float32)[:, None]
        steps = jnp.arange(self.features, dtype=jnp.float32)
        freqs = jnp.exp(-steps * (math.log(1e4) / self.features))
        z = jnp.concatenate([jnp.sin(t * freqs), jnp.cos(t * freqs)], axis=-1)
        h = self.mlp_out(jax.nn.gelu(self.mlp_in(z)))
        return h * jnp.exp(-jnp.exp(self.log_rate[...]) * t)


def causal_fft_conv(u: jax.Array, h: jax.Array) -> jax.Array:
    """y[t] = sum over s <= t of h[s] u[t - s], per channel, in O(T log T): padded to 2T so the
    FFT's circular convolution wraps nothing from the future around."""
    length = u.shape[1]
    u_f = jnp.fft.rfft(u.astype(jnp.float32), n=2 * length, axis=1)
    h_f = jnp.fft.rfft(h, n=2 * length, axis=0)
    return jnp.fft.irfft(u_f * h_f[None], n=2 * length, axis=1)[:, :length].astype(u.dtype)


class Mixer(nnx.Module):
    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, dropout: float = 0.1):
        self.num_heads = num_heads
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.in_proj = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
        self.filter = ImplicitFilter(d_model, rngs=rngs)
        self.skip = nnx.Param(jnp.ones((d_model,)))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out_proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        v, gate_in, gate_out = jnp.split(self.in_proj(self.norm(x)), 3, axis=-1)
        u = v * jax.nn.sigmoid(gate_in)
        y = causal_fft_conv(u, self.filter(x.shape[1])) + u * self.skip[...]
        # per-head RMS normalisation of the long convolution's output
        y = einops.rearrange(y, "b t (h d) -> b t h d", h=self.num_heads)
        y = y * jax.lax.rsqrt(jnp.mean(y * y, axis=-1, keepdims=True) + 1e-6)
        y = einops.rearrange(y, "b t h d -> b t (h d)")
        return self.out_proj(self.dropout(y * jax.nn.silu(gate_out)))


if __name__ == "__main__":
    mixer = Mixer(64, 4, rngs=nnx.Rngs(0))
    print(mixer(jnp.ones((2, 16, 64))).shape)
