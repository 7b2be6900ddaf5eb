"""The device mesh and the one table that maps logical parameter axes onto it.

Mesh axes: "data" (pure data parallelism) and "fsdp" (data parallelism whose parameters and
optimizer state are also sharded). Batches split over both; parameters split their "embed"
axis over "fsdp". A dimension the mesh axis does not divide is replicated instead.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

LOGICAL_AXIS_RULES: dict[str | None, str | None] = {
    "embed": "fsdp",
    "vocab": None,
    "heads": None,
    "mlp": None,
    None: None,
}


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default: all); -1 on one axis takes what the other
    leaves."""
    devices = list(jax.devices() if devices is None else devices)
    if data == -1 and fsdp == -1:
        raise ValueError("only one of train.mesh_data and train.mesh_fsdp may be -1")
    fixed = fsdp if data == -1 else data
    if fixed < 1 or len(devices) % fixed:
        raise ValueError(
            f"train.mesh_data / train.mesh_fsdp ({data} / {fsdp}) must divide the "
            f"{len(devices)} devices"
        )
    if data == -1:
        data = len(devices) // fsdp
    elif fsdp == -1:
        fsdp = len(devices) // data
    if data * fsdp != len(devices):
        raise ValueError(
            f"train.mesh_data x train.mesh_fsdp = {data} x {fsdp} must equal the "
            f"{len(devices)} devices"
        )
    return Mesh(np.asarray(devices).reshape(data, fsdp), MESH_AXES)


def _spec(names: tuple | None, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    if not names:
        return PartitionSpec()
    axes = []
    for name, size in zip(names, shape, strict=True):
        if name not in LOGICAL_AXIS_RULES:
            raise ValueError(f"logical axis {name!r} has no rule in LOGICAL_AXIS_RULES")
        axis = LOGICAL_AXIS_RULES[name]
        axes.append(axis if axis and size % mesh.shape[axis] == 0 else None)
    return PartitionSpec(*axes)


def shardings(abstract_state: nnx.State, mesh: Mesh):
    """The state's tree with each variable's value replaced by its NamedSharding, derived
    from the variable's logical axis names (same tree structure, so it matches the state)."""

    def one(variable):
        names = variable.get_metadata().get("out_sharding")
        return variable.replace(NamedSharding(mesh, _spec(names, variable.shape, mesh)))

    return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's examples -> global arrays sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    batch_devices = math.prod(mesh.shape[a] for a in BATCH_AXES)
    for name, x in local.items():
        if (x.shape[0] * jax.process_count()) % batch_devices:
            raise ValueError(
                f"global batch size {x.shape[0] * jax.process_count()} of {name!r} must be "
                f"divisible by the {batch_devices} devices on the batch axes"
            )
    return {name: jax.make_array_from_process_local_data(sharding, x) for name, x in local.items()}
