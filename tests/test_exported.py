"""Programs traced in the sandbox and run outside it (asi_jax.train.exported): a program
that calls a host-code target, a manifest naming files outside its folder, a forged or
mismatched program are refused before anything runs; an exported baseline trains as the
traced one does."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from train_testing import losses, tiny

from asi_jax.evals.downstream import DownstreamConfig
from asi_jax.models.mixers import resolve_mixer
from asi_jax.train import heldout, sharding
from asi_jax.train.exported import (
    MANIFEST,
    ProgramError,
    ProgramTrainer,
    check_program,
    eval_row_counts,
    export_program,
)
from asi_jax.train.trainer import train


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """A one-device program folder of the tiny deltanet config, and that config."""
    config = tiny("deltanet", steps=6, log_every=2)
    folder = tmp_path_factory.mktemp("program")
    rows = eval_row_counts(heldout.eval_sets(config.data))
    export_program(config, resolve_mixer("deltanet"), folder, platform="cpu", eval_rows=rows)
    return folder, config


def _copy(folder, to):
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def _one_device_mesh():
    return sharding.make_mesh(1, 1, devices=jax.devices()[:1])


def test_an_exported_baseline_trains_as_the_traced_one(program, tmp_path):
    folder, config = program
    mesh = _one_device_mesh()
    exported = train(config, tmp_path / "exported", mesh=mesh, program=folder, log=lambda _: None)
    traced = train(config, tmp_path / "traced", mesh=mesh, log=lambda _: None)
    one, two = losses(tmp_path / "exported"), losses(tmp_path / "traced")
    assert sorted(one) == sorted(two) == [2, 4, 6]
    np.testing.assert_allclose([one[s] for s in one], [two[s] for s in one], rtol=1e-5)
    np.testing.assert_allclose(exported["eval"]["heldout"]["loss"],
                               traced["eval"]["heldout"]["loss"], rtol=1e-5)  # fmt: skip
    assert json.loads((tmp_path / "exported" / "run.json").read_text())["program"] == str(folder)


def _host_target_program():
    def f(x):
        return jax.ffi.ffi_call("evil_host_target", jax.ShapeDtypeStruct(x.shape, x.dtype))(x)

    checks = [export.DisabledSafetyCheck.custom_call("evil_host_target")]
    return export.export(jax.jit(f), disabled_checks=checks)(
        jax.ShapeDtypeStruct((2,), jnp.float32)
    )


def test_a_program_calling_a_host_target_is_refused_before_anything_runs(program, tmp_path):
    folder, config = program
    forged = _copy(folder, tmp_path / "forged")
    (forged / "step.bin").write_bytes(_host_target_program().serialize())
    with pytest.raises(ProgramError, match="'step' calls evil_host_target"):
        train(config, tmp_path / "run", mesh=_one_device_mesh(), program=forged,
              log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    with pytest.raises(ProgramError, match="evil_host_target"):
        check_program(_host_target_program(), "direct")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: {**m, "programs": ["init", "step", "../../secret"]}, "unknown program names"),
        (lambda m: {**m, "programs": ["init"]}, "no 'step' program"),
        (lambda m: {"programs": m["programs"]}, "missing or malformed"),
    ],
)
def test_a_bad_manifest_is_refused(program, tmp_path, change, message):
    folder, config = program
    bad = _copy(folder, tmp_path / "bad")
    manifest = json.loads((folder / MANIFEST).read_text())
    (bad / MANIFEST).write_text(json.dumps(change(manifest)))
    with pytest.raises(ProgramError, match=message):
        ProgramTrainer(config, _one_device_mesh(), bad)


def test_a_truncated_program_and_a_mesh_of_another_size_are_refused(program, tmp_path):
    folder, config = program
    cut = _copy(folder, tmp_path / "cut")
    (cut / "init.bin").write_bytes((folder / "init.bin").read_bytes()[:100])
    with pytest.raises(ProgramError, match=r"'init' in .* does not load"):
        ProgramTrainer(config, _one_device_mesh(), cut)
    two_devices = SimpleNamespace(size=2)  # only its size is read before the refusal
    with pytest.raises(ProgramError, match="traced for 1 devices; this job's mesh has 2"):
        ProgramTrainer(config, two_devices, folder)


def test_a_config_with_downstream_benchmarks_is_refused(program, tmp_path):
    """Their scoring program is not exported: refused before anything runs, not after the
    training it would end."""
    folder, config = program
    evals = DownstreamConfig(benchmarks=("arc_easy",), data_dir=str(tmp_path))
    with pytest.raises(ProgramError, match=r"leave evals\.benchmarks empty"):
        ProgramTrainer(dataclasses.replace(config, evals=evals), _one_device_mesh(), folder)
