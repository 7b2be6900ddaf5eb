"""Flax NNX causal language model and the baseline token mixers.

Parameters carry logical axis names as metadata only: Flax's eager sharding (placing each
variable on a mesh as it is created) is turned off for the whole package, because sharding is
applied in one place, `asi_jax.train.sharding`, from one rules table, and because mixers
(baselines and agents' candidates) must also build with no mesh at all.
"""

import flax

# The process-wide default (nnx.use_eager_sharding would set it for the calling thread only).
flax.config.update("flax_always_shard_variable", False)
