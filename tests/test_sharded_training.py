"""Training on 8 simulated CPU devices (mesh data=2 x fsdp=4) matches one device, and its
checkpoint, restored on one device, evaluates to the same figures.

The device count must be forced before JAX starts, so the training runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from asi_jax.evals.checkpoint import evaluate_run

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import json, sys
import jax
sys.path.insert(0, {tests!r})
from train_testing import tiny, losses
from asi_jax.train.sharding import make_mesh
from asi_jax.train.trainer import train

assert len(jax.devices()) == 8, jax.devices()
config = tiny("gated_deltanet", steps=20, log_every=2, checkpoint_every=20)
out = {{}}
for name, mesh in (("one", make_mesh(devices=jax.devices()[:1])), ("eight", make_mesh(2, 4))):
    workdir = {tmp!r} + "/" + name
    result = train(config, workdir, mesh=mesh, log=lambda _: None)
    out[name] = {{"losses": losses(__import__("pathlib").Path(workdir)),
                 "eval": result["eval"]["heldout"]["loss"]}}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_eight_devices_match_one_and_restore_on_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    code = _SCRIPT.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    one, eight = out["one"], out["eight"]
    assert one["losses"].keys() == eight["losses"].keys()
    steps = sorted(one["losses"], key=int)
    np.testing.assert_allclose(
        [eight["losses"][s] for s in steps], [one["losses"][s] for s in steps], rtol=1e-4
    )
    np.testing.assert_allclose(eight["eval"], one["eval"], rtol=1e-4)

    assert len(jax.devices()) == 1  # this process: the fsdp-sharded checkpoint, resharded
    restored = evaluate_run(tmp_path / "eight", kv_pairs=[])
    np.testing.assert_allclose(restored["eval"]["heldout"]["loss"], eight["eval"], rtol=1e-5)


def test_parameters_are_sharded_over_fsdp():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    code = (
        "import jax, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from train_testing import tiny\n"
        "from asi_jax.train.sharding import make_mesh\n"
        "from asi_jax.train.trainer import Trainer\n"
        "state = Trainer(tiny('deltanet'), make_mesh(2, 4)).init_state()\n"
        "emb = state['params']['embed']['embedding'][...]\n"
        "mu = state['opt_state'][1][0].mu['embed']['embedding'][...]\n"
        "print(emb.sharding.spec, mu.sharding.spec, emb.addressable_shards[0].data.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # [vocab 256, embed 32]: embed split over fsdp = 4, optimizer moments alike
    assert "P(None, 'fsdp') P(None, 'fsdp') (256, 8)" in result.stdout
