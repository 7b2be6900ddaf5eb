"""A causal language model in Flax NNX with a pluggable token mixer.

tokens [B, T] -> embedding -> N x (x + mixer(norm(x)); x + SwiGLU(norm(x))) -> norm -> logits.
The mixer is any class following the candidate contract, `Mixer(d_model, num_heads, *, rngs)`
with x [B, T, D] -> [B, T, D]: a baseline from `mixers.MIXERS` or an agent's candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from asi_jax.models.layers import RMSNorm, dense

MixerFactory = Callable[..., nnx.Module]  # (d_model, num_heads, *, rngs) -> Mixer


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # 0 in an experiment config: the data's (its tokenizer's) vocabulary
    d_model: int
    num_layers: int
    num_heads: int
    mlp_hidden: int = 0  # 0: the SwiGLU default, 8/3 d_model rounded up to a multiple of 8
    tie_embeddings: bool = True
    # Learned absolute position embeddings for up to this many tokens; 0: none (the mixers
    # carry their own position information, e.g. rotary or recurrence). Zoology's MQAR
    # attention baseline uses them.
    max_positions: int = 0

    def __post_init__(self):
        if self.vocab_size < 0:
            raise ValueError(f"model.vocab_size must be >= 0 (0: the data's), got "
                             f"{self.vocab_size}")  # fmt: skip
        for name in ("d_model", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads "
                f"({self.num_heads})"
            )

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or -(-8 * self.d_model // 3 // 8) * 8


class SwiGLU(nnx.Module):
    def __init__(self, d_model: int, hidden: int, *, rngs: nnx.Rngs):
        self.up = dense(d_model, 2 * hidden, rngs=rngs, axes=("embed", "mlp"))
        self.down = dense(hidden, d_model, rngs=rngs, axes=("mlp", "embed"))

    def __call__(self, x: Array) -> Array:
        gate, up = jnp.split(self.up(x), 2, axis=-1)
        return self.down(jax.nn.silu(gate) * up)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, mixer: MixerFactory, *, rngs: nnx.Rngs):
        self.mixer_norm = RMSNorm(config.d_model, rngs=rngs)
        self.mixer = mixer(config.d_model, config.num_heads, rngs=rngs)
        self.mlp_norm = RMSNorm(config.d_model, rngs=rngs)
        self.mlp = SwiGLU(config.d_model, config.hidden, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x + self.mixer(self.mixer_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class CausalLM(nnx.Module):
    def __init__(self, config: ModelConfig, mixer: MixerFactory, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = nnx.Embed(
            config.vocab_size,
            config.d_model,
            # std d^-1/2: with a tied head, logits of the unit-RMS final features start ~N(0, 1).
            embedding_init=nnx.with_partitioning(
                nnx.initializers.normal(stddev=config.d_model**-0.5), ("vocab", "embed")
            ),
            rngs=rngs,
        )
        self.positions = (
            nnx.Embed(
                config.max_positions,
                config.d_model,
                embedding_init=nnx.with_partitioning(
                    nnx.initializers.normal(stddev=config.d_model**-0.5), (None, "embed")
                ),
                rngs=rngs,
            )
            if config.max_positions
            else None
        )
        self.blocks = nnx.List([Block(config, mixer, rngs=rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(config.d_model, rngs=rngs)
        self.head = (
            None
            if config.tie_embeddings
            else dense(config.d_model, config.vocab_size, rngs=rngs, axes=("embed", "vocab"))
        )

    def __call__(self, tokens: Array) -> Array:
        """tokens: [B, T] int -> logits [B, T, vocab] float32."""
        x = self.embed(tokens)
        if self.positions is not None:
            length = tokens.shape[1]
            if length > self.config.max_positions:
                raise ValueError(
                    f"sequence of {length} tokens is longer than model.max_positions "
                    f"({self.config.max_positions})"
                )
            x = x + self.positions(jnp.arange(length))[None]
        for block in self.blocks:
            x = block(x)
        x = self.final_norm(x)
        logits = self.embed.attend(x) if self.head is None else self.head(x)
        return logits.astype(jnp.float32)


def parameter_count(tree) -> int:
    """The trainable parameters of a module (real or abstract) or of a state's leaves."""
    state = nnx.state(tree, nnx.Param) if isinstance(tree, nnx.Module) else tree
    return int(sum(x.size for x in jax.tree.leaves(state)))


def count_params(model: CausalLM) -> dict[str, int]:
    """Total trainable parameters, and the same without the embedding tables and LM head."""
    total = parameter_count(model)
    embedding = model.embed.embedding.size
    if model.positions is not None:
        embedding += model.positions.embedding.size
    if model.head is not None:
        embedding += parameter_count(model.head)
    return {"total": total, "non_embedding": int(total - embedding)}


def build_model(config: ModelConfig, mixer: MixerFactory, *, seed: int) -> CausalLM:
    """An unsharded model on the default device (tests, the candidate checker); sharded
    training builds its parameters through `asi_jax.train.sharding` instead."""
    return CausalLM(config, mixer, rngs=nnx.Rngs(seed))
