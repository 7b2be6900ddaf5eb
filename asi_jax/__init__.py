"""asi-jax: autonomous discovery of linear-attention token mixers in JAX, Flax NNX and Pallas."""
