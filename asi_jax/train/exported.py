"""A mixer file's training program, traced inside the sandbox and run outside it.

A multi-host job needs the network (the coordinator, the collectives' ports picked at run
time), which the sandbox's network namespace shuts; and a mixer file is Python that may do
anything when traced. So the two are split: the sandboxed worker (job "export") traces the
model, loss, optimizer step and evaluation for the job's whole mesh, on as many simulated CPU
devices, and writes them as serialized `jax.export` programs (StableHLO). Every process of
the job then loads them with `ProgramTrainer` and runs them under `jax.distributed`; no
Python of the mixer's runs outside the sandbox.

A program can still carry custom calls, some of which run host code (a Python callback). The
loader reads every custom call's target in each program and accepts only those in
`ALLOWED_CUSTOM_CALLS`: sharding markers, Pallas kernels (device code: a Triton or Mosaic
kernel has no system calls) and XLA's own numerical kernels. A program is refused before it
runs, naming the target.

State layout: {"step": int32 [], "params" / "rest" / "opt_state": lists of arrays}, the
leaves of the trainer's state in its tree order. Lists, because a program's argument tree
must be serializable; the leaves' names stay inside the sandbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

import pallas_kernels as pk
from asi_jax.train import sharding
from asi_jax.train.config import ExperimentConfig
from asi_jax.train.trainer import Trainer

MANIFEST = "program.json"
PARTS = ("params", "rest", "opt_state")
BATCH_DTYPES = {"inputs": np.int32, "targets": np.int32, "mask": np.float32}

# Custom-call targets a program may use. XLA's CPU/GPU linear-algebra FFI kernels and the
# sharding markers are jax.export's own stable set; the Pallas kernels are device code. Absent
# on purpose: every host callback (xla_python_cpu_callback, xla_ffi_python_*), TF calls.
ALLOWED_CUSTOM_CALLS = frozenset({
    "Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape", "annotate_device_placement",
    "shape_assertion", "AllocateBuffer", "cu_threefry2x32_ffi", "hip_threefry2x32_ffi",
    "__gpu$xla.gpu.triton", "tpu_custom_call", "mosaic_gpu_v2",
    "Eigh", "Qr", "ProductOfElementaryHouseholderReflectors", "LuDecomposition", "ApproxTopK",
})  # fmt: skip
# XLA's CPU LAPACK and GPU cuSOLVER/cuBLAS wrappers: numerical kernels, by name prefix.
_ALLOWED_PREFIXES = ("lapack_", "cusolver_", "cublas_", "hipsolver_", "hipblas_", "cu_lu_")
_PROGRAM_NAME = re.compile(r"^(init|step|eval_[0-9]+)$")
_CUSTOM_CALL = re.compile(r"custom_call\s*@([^\s(]+)|call_target_name\s*=\s*\"([^\"]+)\"")


class ProgramError(ValueError):
    """A program folder that cannot be run: missing, malformed, or using a refused target."""


def custom_call_targets(program: export.Exported) -> set[str]:
    """Every custom call's target in the program's StableHLO."""
    text = program.mlir_module()
    return {a or b for a, b in _CUSTOM_CALL.findall(text)}


def check_program(program: export.Exported, name: str) -> None:
    """Raises ProgramError when the program calls a target outside ALLOWED_CUSTOM_CALLS."""
    refused = sorted(
        t
        for t in custom_call_targets(program)
        if t not in ALLOWED_CUSTOM_CALLS and not t.startswith(_ALLOWED_PREFIXES)
    )
    if refused:
        raise ProgramError(
            f"program {name!r} calls {', '.join(refused)}: a custom call that may run host "
            "code, refused (see asi_jax/train/exported.py: ALLOWED_CUSTOM_CALLS)"
        )


def refuse_benchmarks(config: ExperimentConfig) -> None:
    """Raises ProgramError when the config asks for downstream benchmarks: their scoring
    program is not exported (a run of programs trains and measures held-out loss)."""
    if config.evals.benchmarks:
        raise ProgramError("a multi-host run of a mixer file trains and evaluates held-out "
                           "loss; downstream benchmarks run on its checkpoint afterwards "
                           "(scripts/evaluate_downstream.py), so leave evals.benchmarks "
                           "empty")  # fmt: skip


def _batch(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A batch's arrays in the dtypes the programs were traced with."""
    return {k: np.asarray(data[k], dtype) for k, dtype in BATCH_DTYPES.items()}


def _pack(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"step": state["step"], **{part: jax.tree.leaves(state[part]) for part in PARTS}}


def export_program(
    config: ExperimentConfig,
    mixer: Any,
    folder: Path,
    *,
    platform: str,
    eval_rows: Sequence[int],
) -> dict[str, Any]:
    """Traces `config`'s training with `mixer` over all of this process's devices (as many
    as the job's mesh) and writes the programs and their manifest to `folder`; returns the
    manifest. `platform`: where the job runs ("cpu", "cuda", "tpu"). `eval_rows`: the row
    counts of the held-out batches (every one is a program of its own shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    # Traced on the sandbox's CPU, where Pallas would lower to its interpreter, not to the
    # job's Triton or Mosaic kernels: the chunked XLA path (or the reference recurrence).
    impl = "recurrent" if config.train.kernel_impl == "recurrent" else "chunk"
    with pk.default_impl(impl):
        mesh = sharding.make_mesh(config.train.mesh_data, config.train.mesh_fsdp)
        trainer = Trainer(config, mesh, mixer)
        replicated = sharding.replicated(mesh)

        with jax.set_mesh(mesh):
            abstract = jax.eval_shape(trainer.fresh_state)
        trees = {part: jax.tree.structure(abstract[part]) for part in PARTS}
        packed = _pack(abstract)
        shardings = jax.tree.map(lambda x: x.sharding or replicated, packed)
        packed_abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), packed, shardings
        )

        def unpack(flat: dict) -> dict:
            return {
                "step": flat["step"],
                **{part: jax.tree.unflatten(trees[part], flat[part]) for part in PARTS},
            }

        def batch(rows: int, batch_sharding) -> dict:
            shape = (rows, config.data.seq_len)
            return {k: jax.ShapeDtypeStruct(shape, d, sharding=batch_sharding)
                    for k, d in BATCH_DTYPES.items()}  # fmt: skip

        def step(flat: dict, data: dict) -> tuple[dict, dict]:
            state, metrics = trainer._step(unpack(flat), data)
            return _pack(state), metrics

        def eval_sums(flat: dict, data: dict) -> dict:
            state = unpack(flat)
            return trainer._eval_sums(state["params"], state["rest"], data)

        platforms = (platform,)
        with jax.set_mesh(mesh):
            programs = {
                "init": export.export(
                    jax.jit(lambda: _pack(trainer.fresh_state()), out_shardings=shardings),
                    platforms=platforms,
                )(),
                "step": export.export(
                    jax.jit(step, in_shardings=(shardings, sharding.batch_sharding(mesh)),
                            out_shardings=(shardings, replicated), donate_argnums=0),
                    platforms=platforms,
                )(packed_abstract, batch(config.data.batch_size, sharding.batch_sharding(mesh))),
            }  # fmt: skip
            for rows in sorted(set(eval_rows)):
                programs[f"eval_{rows}"] = export.export(
                    jax.jit(eval_sums, out_shardings=replicated), platforms=platforms
                )(packed_abstract, batch(rows, replicated))
    for name, program in programs.items():
        (folder / f"{name}.bin").write_bytes(program.serialize())
    manifest = {
        "programs": sorted(programs),
        "devices": mesh.size,
        "mesh": dict(mesh.shape),
        "platform": platform,
        "kernel_impl": impl,
        "param_counts": trainer.param_counts,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def eval_row_counts(sets: Mapping[str, Sequence[Mapping[str, np.ndarray]]]) -> list[int]:
    """The distinct row counts of the held-out batches (`heldout.eval_sets`)."""
    return sorted({len(b["inputs"]) for batches in sets.values() for b in batches})


class ProgramTrainer:
    """`Trainer`'s interface over a program folder written by `export_program`: what
    `trainer.train` calls (init_state, train_step, eval_sums, param_counts) runs the
    programs, each checked by `check_program` as it loads. No downstream scoring: a config
    with benchmarks is refused (`refuse_benchmarks`)."""

    def __init__(self, config: ExperimentConfig, mesh: jax.sharding.Mesh, folder: Path):
        refuse_benchmarks(config)
        self.config, self.mesh = config, mesh
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            names = [str(name) for name in manifest["programs"]]
            bad = [name for name in names if not _PROGRAM_NAME.match(name)]
            if bad:  # names become file names: nothing but ours may reach the filesystem
                raise ValueError(f"unknown program names {bad}")
            self.param_counts = {k: int(v) for k, v in manifest["param_counts"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ProgramError(f"{folder / MANIFEST} is missing or malformed: {e}") from e
        self.programs: dict[str, export.Exported] = {}
        for name in names:
            try:
                program = export.deserialize(bytearray((folder / f"{name}.bin").read_bytes()))
            except Exception as e:  # a forged or truncated file: a clear refusal, not a crash
                raise ProgramError(f"program {name!r} in {folder} does not load: {e}") from e
            check_program(program, name)
            if program.nr_devices != mesh.size:
                raise ProgramError(f"program {name!r} was traced for {program.nr_devices} "
                                   f"devices; this job's mesh has {mesh.size}")  # fmt: skip
            self.programs[name] = program
        for needed in ("init", "step"):
            if needed not in self.programs:
                raise ProgramError(f"{folder} has no {needed!r} program")

    def _program(self, name: str) -> export.Exported:
        if name not in self.programs:
            raise ProgramError(f"no program {name!r} (have {sorted(self.programs)})")
        return self.programs[name]

    def init_state(self) -> dict:
        with jax.set_mesh(self.mesh):
            return self._program("init").call()

    def train_step(self, state: dict, local_batch) -> tuple[dict, dict]:
        with jax.set_mesh(self.mesh):
            return self._program("step").call(
                state, sharding.global_batch(_batch(local_batch), self.mesh)
            )

    def eval_sums(self, state: dict, batch) -> dict[str, jax.Array]:
        data = _batch(batch)
        with jax.set_mesh(self.mesh):
            return self._program(f"eval_{len(data['inputs'])}").call(state, data)
