"""Linear-attention token mixers: the task ASI-Arch evolves (see `task`)."""

from asi_jax.tasks.linear_attention.task import LinearAttentionTask

__all__ = ["LinearAttentionTask"]
