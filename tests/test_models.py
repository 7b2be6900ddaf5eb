"""The causal LM and the baseline mixers: contract, causality, gradients, parameter counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from asi_jax.models.lm import ModelConfig, build_model, count_params
from asi_jax.models.mixers import MIXERS, get_mixer

CONFIG = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=2)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_contract_causality_and_gradients(name):
    mixer = get_mixer(name)(32, 2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 37, 32))
    y = mixer(x)
    assert y.shape == x.shape and bool(jnp.isfinite(y).all())
    # Changing inputs after position t must not change outputs up to t.
    x_future = x.at[:, 20:].set(jax.random.normal(jax.random.PRNGKey(2), (2, 17, 32)))
    np.testing.assert_allclose(mixer(x_future)[:, :20], y[:, :20], atol=1e-5)
    graphdef, params, rest = nnx.split(mixer, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(x) ** 2)

    grads = jax.grad(loss)(params)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.isfinite(g).all()) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_lm_logits_and_param_counts():
    model = build_model(CONFIG, get_mixer("deltanet"), seed=0)
    tokens = jnp.zeros((3, 11), jnp.int32)
    logits = model(tokens)
    assert logits.shape == (3, 11, 64) and logits.dtype == jnp.float32
    counts = count_params(model)
    assert counts["total"] - counts["non_embedding"] == 64 * 32  # the tied embedding table
    untied = build_model(
        ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=2, tie_embeddings=False),
        get_mixer("deltanet"),
        seed=0,
    )
    assert count_params(untied)["total"] == counts["total"] + 32 * 64
    assert count_params(untied)["non_embedding"] == counts["non_embedding"]


def test_learned_positions_make_the_lm_position_aware():
    config = ModelConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=1, max_positions=8)
    model = build_model(config, get_mixer("linear_attention"), seed=0)
    logits = model(jnp.zeros((1, 8), jnp.int32))  # same token everywhere
    assert not np.allclose(logits[0, 0], logits[0, 1])
    plain = build_model(CONFIG, get_mixer("linear_attention"), seed=0)
    assert count_params(model)["total"] - count_params(model)["non_embedding"] == (64 + 8) * 32
    assert count_params(plain)["total"] - count_params(plain)["non_embedding"] == 64 * 32
    with pytest.raises(ValueError, match=r"longer than model.max_positions \(8\)"):
        model(jnp.zeros((1, 9), jnp.int32))


def test_same_seed_same_model():
    a = build_model(CONFIG, get_mixer("gla"), seed=3)
    b = build_model(CONFIG, get_mixer("gla"), seed=3)
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by model.num_heads"):
        ModelConfig(vocab_size=8, d_model=30, num_layers=1, num_heads=4)
    with pytest.raises(ValueError, match=r"model\.num_layers must be positive"):
        ModelConfig(vocab_size=8, d_model=32, num_layers=0, num_heads=4)
    with pytest.raises(ValueError, match="unknown mixer 'mamba9'"):
        get_mixer("mamba9")
