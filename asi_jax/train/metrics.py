"""Where training metrics go: metrics.jsonl (what programs read) and TensorBoard events.

Also the terminal's progress line. On resume, lines logged after the restored checkpoint are
dropped first, since those steps run again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tensorboardX import SummaryWriter


def progress_line(step: int, total: int, metrics: dict[str, float], width: int = 20) -> str:
    filled = int(width * step / total)
    bar = "#" * filled + "." * (width - filled)
    rate = metrics.get("tokens_per_second", math.nan)
    return (
        f"[{bar}] {step}/{total}  loss {metrics['loss']:.4f}  acc {metrics['accuracy']:.3f}  "
        f"gnorm {metrics['grad_norm']:.3f}  {rate:,.0f} tok/s"
    )


class MetricsWriter:
    """`enabled=False` writes nothing: a multi-host job's processes share the workdir, and
    only process 0 writes its metrics."""

    def __init__(self, workdir: Path, *, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.jsonl = workdir / "metrics.jsonl"
        if not enabled:
            return
        if self.jsonl.exists():
            lines = [ln for ln in self.jsonl.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["step"] <= resume_step]
            self.jsonl.write_text("".join(ln + "\n" for ln in kept))
        self.tensorboard = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        if prefix == "train":
            with self.jsonl.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tensorboard.add_scalar(f"{prefix}/{name}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()
