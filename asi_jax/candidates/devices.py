"""The accelerators a sandboxed worker is pinned to, and the settings that confine its runtime
to them: the one table for several workers on one TPU host.

    env = pinned_environment("2,3", tpu=True)     # what the sandbox adds to a worker's env
    envs = tpu_workers("v5e-8", 4)                # the same, for each of 4 workers on a host

A GPU worker needs only CUDA_VISIBLE_DEVICES. libtpu takes every chip of a host as one slice
unless each process is given its share: the chips (TPU_VISIBLE_CHIPS), the box they form
(TPU_CHIPS_PER_PROCESS_BOUNDS, x,y,z), that the process is a job of its own
(TPU_PROCESS_BOUNDS=1,1,1, CLOUD_TPU_TASK_ID=0) and a port of its own for the runtime
(TPU_PROCESS_PORT, TPU_PROCESS_ADDRESSES). These are the variables, bounds and chip order JAX's
own multi-process launcher uses (jax/_src/test_multiprocess.py): a worker with k chips gets
the k consecutive chip ids starting at a multiple of k.
"""

from __future__ import annotations

import glob

# Chips per worker -> the box (x, y, z) they form on the host.
CHIP_BOUNDS: dict[int, tuple[int, int, int]] = {1: (1, 1, 1), 2: (1, 2, 1), 4: (2, 2, 1),
                                                8: (2, 4, 1)}  # fmt: skip
# Chips of one host (one TPU VM) of each type.
TPU_HOST_CHIPS: dict[str, int] = {"v4-8": 4, "v5e-4": 4, "v5e-8": 8, "v6e-8": 8}
TPU_BASE_PORT = 8476  # libtpu's default; a worker whose first chip is c takes this + c


def tpu_host() -> bool:
    """This machine has TPU chips (v4: /dev/accel*; v5e and later: /dev/vfio/<n>)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def pinned_environment(visible_devices: str, *, tpu: bool) -> dict[str, str]:
    """The variables that pin a worker to `visible_devices` (device ids, "0" or "4,5,6,7").
    On a TPU host the ids must be a block of the table's: k in CHIP_BOUNDS consecutive ids
    starting at a multiple of k."""
    env = {"CUDA_VISIBLE_DEVICES": visible_devices}
    if not tpu:
        return env
    try:
        chips = [int(c) for c in visible_devices.split(",")]
    except ValueError:
        chips = []
    k = len(chips)
    if k not in CHIP_BOUNDS or chips != list(range(chips[0], chips[0] + k)) or chips[0] % k:
        raise ValueError(
            f"TPU chips {visible_devices!r} are not a block a worker can have: "
            f"{sorted(CHIP_BOUNDS)} consecutive chips starting at a multiple of their number"
        )
    port = TPU_BASE_PORT + chips[0]
    return {
        **env,
        "TPU_VISIBLE_CHIPS": visible_devices,
        "TPU_CHIPS_PER_PROCESS_BOUNDS": ",".join(map(str, CHIP_BOUNDS[k])),
        "TPU_PROCESS_BOUNDS": "1,1,1",
        "CLOUD_TPU_TASK_ID": "0",
        "TPU_PROCESS_PORT": str(port),
        "TPU_PROCESS_ADDRESSES": f"localhost:{port}",
        "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",  # the other workers hold the host's other chips
    }


def tpu_visible_devices(host: str, workers: int) -> list[str]:
    """The chips of each of `workers` workers sharing a `host` (a TPU_HOST_CHIPS type)."""
    if host not in TPU_HOST_CHIPS:
        raise ValueError(f"unknown TPU host {host!r}; known: {sorted(TPU_HOST_CHIPS)}")
    chips = TPU_HOST_CHIPS[host]
    k = chips // workers if workers > 0 and chips % workers == 0 else 0
    if k not in CHIP_BOUNDS:
        options = [chips // k for k in CHIP_BOUNDS if k <= chips]
        raise ValueError(f"a {host} host ({chips} chips) takes {options} workers, not {workers}")
    return [",".join(map(str, range(i * k, (i + 1) * k))) for i in range(workers)]


def tpu_workers(host: str, workers: int) -> list[dict[str, str]]:
    """The pinning environment of each of `workers` workers on a `host`."""
    return [pinned_environment(v, tpu=True) for v in tpu_visible_devices(host, workers)]
