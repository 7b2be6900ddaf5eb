"""The jitted GLA chunk gradient runs on XLA:CPU (it used to segfault there) and is right.

jaxlib 0.10.2's XLA:CPU segfaulted *running* the jitted gradient of `gla(..., impl="chunk")`
at B=2, H=4, K=V=8 and T = 16, 37, 64 on an AMD EPYC (AVX2, no AVX-512): a rank-7 multiply-
reduce fusion handed to YNNPACK (tests/data/xla_cpu_gla_crash/repro.py). The eager-gradient
tests elsewhere never saw it: there `chunk` is a jit of its own, and the crashing fusion only
formed with the whole gradient in one jit. The gradient runs in a subprocess here, so a
crash fails this test with the shape named instead of killing the pytest(-xdist) worker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ops_testing import assert_close

import pallas_kernels as pk

SHAPES = [(2, seq_len, 4, 8, 8) for seq_len in (16, 37, 64)]  # (B, T, H, K, V)
# One jit of the gradient w.r.t. all four: before the fix it crashed at each shape, as did
# the gradients w.r.t. q, k or gk alone (w.r.t. v alone never touched the crashing fusion).
WRT = {"q, k, v, gk": (0, 1, 2, 3)}
REPO = Path(__file__).resolve().parents[1]

# Runs in the subprocess: writes each shape's inputs and jitted chunk gradients to an .npz.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import pallas_kernels as pk

    shapes, wrt, out_dir = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    for batch, seq_len, heads, key_dim, value_dim in shapes:
        keys = jax.random.split(jax.random.PRNGKey(seq_len), 5)
        q, k = (jax.random.normal(x, (batch, seq_len, heads, key_dim)) for x in keys[:2])
        v = jax.random.normal(keys[2], (batch, seq_len, heads, value_dim))
        gk = -jax.nn.softplus(jax.random.normal(keys[3], (batch, seq_len, heads, key_dim)))
        w_o = jax.random.normal(keys[4], (batch, seq_len, heads, value_dim))

        def loss(*args):
            o, s = pk.gla(*args, output_final_state=True, impl="chunk")
            return jnp.sum(o * w_o) + jnp.sum(s)

        results = {"q": q, "k": k, "v": v, "gk": gk, "w_o": w_o}
        for name, argnums in wrt.items():
            tag = f"B={batch} T={seq_len} H={heads} K={key_dim} V={value_dim} wrt {name}"
            print("running", tag, flush=True)
            grads = jax.jit(jax.grad(loss, argnums=tuple(argnums)))(q, k, v, gk)
            for i, g in zip(argnums, jax.block_until_ready(grads)):
                results[f"{name}/d{i}"] = g
            print("done", tag, flush=True)
        np.savez(f"{out_dir}/T{seq_len}.npz", **{n: np.asarray(x) for n, x in results.items()})
    """
)


def _recurrent_grads(arrays: dict, argnums: tuple[int, ...]) -> tuple:
    def loss(*args):
        o, s = pk.gla(*args, output_final_state=True, impl="recurrent")
        return jnp.sum(o * arrays["w_o"]) + jnp.sum(s)

    args = tuple(jnp.asarray(arrays[name]) for name in ("q", "k", "v", "gk"))
    return jax.grad(loss, argnums=argnums)(*args)


@pytest.mark.slow  # compiles the GLA gradient in a subprocess: 1-2 min
def test_jitted_gla_chunk_gradient_runs_and_matches_recurrent(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(SHAPES), json.dumps(WRT), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode:
        started = [line for line in proc.stdout.splitlines() if line.startswith("running")]
        where = started[-1].removeprefix("running ") if started else "before the first shape"
        how = (
            f"signal {signal.Signals(-proc.returncode).name}"
            if proc.returncode < 0
            else f"exit code {proc.returncode}"
        )
        raise AssertionError(
            f"jit(grad(gla chunk)) died with {how} at {where} (float32); see "
            f"tests/data/xla_cpu_gla_crash/repro.py. stderr tail:\n{proc.stderr[-2000:]}"
        )

    for _, seq_len, *_ in SHAPES:
        arrays = dict(np.load(tmp_path / f"T{seq_len}.npz"))
        for name, argnums in WRT.items():
            actual = tuple(arrays[f"{name}/d{i}"] for i in argnums)
            expected = _recurrent_grads(arrays, argnums)
            assert_close(actual, expected, rtol=2e-4, atol=2e-4, what=f"T={seq_len} d/d{name}")
