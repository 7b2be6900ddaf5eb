"""Joining a multi-host job: the one place `jax.distributed` is initialised.

    settings = DistributedConfig.from_env()      # or built from scripts/train.py's flags
    initialize(settings)                         # before anything else touches JAX's backends

Every process of the job runs the same command with its own `process_id`; process 0 hosts the
coordinator at `coordinator` ("host:port", reachable from every process). The environment
uses JAX's names, so a launcher (SLURM, a pod's startup script, a test) can set them instead
of flags: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID. A Cloud TPU pod slice
needs none of them: TPU_WORKER_HOSTNAMES (set on each of its VMs) lets JAX find the rest.

A mixer file's Python never runs in a process of the job: the sandbox's network namespace
shuts the coordinator and the collectives out, so each process has the file traced in a
sandboxed worker and runs the programs it wrote (`asi_jax.train.exported`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    coordinator: str | None = None  # "host:port" of process 0's coordinator; None: one host
    num_processes: int = 1
    process_id: int = 0
    auto: bool = False  # JAX detects the cluster itself (a Cloud TPU pod slice)
    timeout_seconds: int = 300  # how long processes wait for each other to join

    def __post_init__(self):
        if self.num_processes < 1 or not 0 <= self.process_id < self.num_processes:
            raise ValueError(f"process id {self.process_id} is not one of the "
                             f"{self.num_processes} processes")  # fmt: skip
        if self.num_processes > 1 and not self.coordinator:
            raise ValueError(f"{self.num_processes} processes need a coordinator address")
        if self.coordinator:
            host, _, port = self.coordinator.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"coordinator {self.coordinator!r} is not host:port")

    @property
    def multi_host(self) -> bool:
        return self.auto or self.num_processes > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DistributedConfig:
        """The settings a launcher left in the environment (see the module's docstring)."""
        hosts = [h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
        coordinator = environ.get("JAX_COORDINATOR_ADDRESS") or None
        if coordinator is None:
            return cls(auto=len(hosts) > 1)
        return cls(coordinator, int(environ.get("JAX_NUM_PROCESSES", "1")),
                   int(environ.get("JAX_PROCESS_ID", "0")))  # fmt: skip


def initialize(settings: DistributedConfig) -> None:
    """Joins the job `settings` describe (blocks until every process has); one process alone
    does nothing. Call it before anything asks JAX for its devices."""
    if not settings.multi_host or jax.distributed.is_initialized():
        return
    if settings.auto:
        jax.distributed.initialize(initialization_timeout=settings.timeout_seconds)
        return
    jax.distributed.initialize(
        coordinator_address=settings.coordinator,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
        initialization_timeout=settings.timeout_seconds,
    )
