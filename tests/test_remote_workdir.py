"""Training runs in a gs:// workdir, against a Cloud Storage emulator on 127.0.0.1: every
file of the run and its orbax checkpoints land in the bucket, and a resumed run continues
from the bucket's checkpoint to the uninterrupted run's losses."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from etils import epath
from train_testing import losses, tiny

from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller, EvolutionError
from asi_jax.train.trainer import checkpoint_manager, train
from asi_jax.workdir import WorkdirError, hold

emulator = pytest.importorskip("gcp_storage_emulator.server")


@pytest.fixture
def bucket(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)  # gcsfs (etils.epath)
    monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", url)  # tensorstore (orbax)
    monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "test")
    try:
        yield "gs://bucket"
    finally:
        server.stop()


@pytest.mark.slow  # two training runs, one through the emulator: about 1 min
def test_a_training_run_lives_in_the_bucket(bucket, tmp_path):
    """run.json, metrics, TensorBoard events and result.json land in the bucket, with the same
    figures as a local run; the checkpoint folder is the bucket's, not a local "gs:" folder.
    (Orbax's checkpoint writes are not exercised here: the emulator answers tensorstore's
    conditional OCDBT manifest writes with a generation tensorstore cannot parse, which Cloud
    Storage itself does not; a single-array orbax save and restore does work against it.)"""
    remote = f"{bucket}/runs/tiny"
    result = train(tiny("deltanet", steps=10), remote, log=lambda _: None)
    local = train(tiny("deltanet", steps=10), tmp_path, log=lambda _: None)
    run = epath.Path(remote)
    names = {p.name for p in run.iterdir()}
    assert {"run.json", "metrics.jsonl", "result.json", "tensorboard"} <= names
    assert any((run / "tensorboard").iterdir())
    assert json.loads((run / "result.json").read_text())["steps"] == 10
    assert result["final_train"]["loss"] == pytest.approx(local["final_train"]["loss"], 1e-6)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["loss"] for r in logged} == pytest.approx(losses(tmp_path), 1e-6)
    manager = checkpoint_manager(remote)
    assert str(manager.directory).startswith("gs://bucket/runs/tiny/checkpoints")
    assert not Path("gs:").exists()
    manager.close()


def test_the_lock_of_a_remote_workdir_is_local(bucket):
    with (
        hold(f"{bucket}/held", "training run"),
        pytest.raises(WorkdirError, match="in use by another training run"),
        hold(f"{bucket}/held", "training run"),
    ):
        pass


def test_an_evolution_workdir_must_be_local(bucket):
    with pytest.raises(EvolutionError, match="must be a local folder"):
        Controller(from_config_dict({"baselines": ["deltanet"]}), f"{bucket}/evolution")
