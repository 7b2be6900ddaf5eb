# expect: causality: reads the future
from flax import nnx


class Mixer(nnx.Module):
    """A centred (SAME-padded) convolution sees two positions ahead."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.conv = nnx.Conv(
            d_model,
            d_model,
            kernel_size=(5,),
            padding="SAME",
            feature_group_count=d_model,
            rngs=rngs,
        )

    def __call__(self, x):
        return self.conv(x)
