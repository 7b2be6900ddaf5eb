"""Sharded training: one jitted step over a device mesh, optax, orbax checkpoints, monitoring."""
