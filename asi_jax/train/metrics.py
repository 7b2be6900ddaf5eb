"""Where training metrics go: metrics.jsonl (what programs read) and TensorBoard events.

Also the terminal's progress line. On resume, lines logged after the restored checkpoint are
dropped first, since those steps run again.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

from etils import epath
from tensorboardX import SummaryWriter

from asi_jax.workdir import is_remote


def progress_line(step: int, total: int, metrics: dict[str, float], width: int = 20) -> str:
    filled = int(width * step / total)
    bar = "#" * filled + "." * (width - filled)
    rate = metrics.get("tokens_per_second", math.nan)
    return (
        f"[{bar}] {step}/{total}  loss {metrics['loss']:.4f}  acc {metrics['accuracy']:.3f}  "
        f"gnorm {metrics['grad_norm']:.3f}  {rate:,.0f} tok/s"
    )


class MetricsWriter:
    """On a remote workdir (gs://), which cannot append, metrics.jsonl is rewritten whole at
    each logged step (it holds one short line per log_every steps), and TensorBoard's events
    are written locally and copied to `<workdir>/tensorboard` when the run closes.
    `enabled=False` writes nothing: a multi-host job's processes share the workdir, and only
    process 0 writes its metrics."""

    def __init__(self, workdir: Path | epath.Path, *, resume_step: int = 0,
                 enabled: bool = True):  # fmt: skip
        self.enabled = enabled
        self.jsonl = workdir / "metrics.jsonl"
        self.lines: list[str] = []
        if not enabled:
            return
        if self.jsonl.exists():
            lines = [ln for ln in self.jsonl.read_text().splitlines() if ln.strip()]
            self.lines = [ln for ln in lines if json.loads(ln)["step"] <= resume_step]
            self.jsonl.write_text("".join(ln + "\n" for ln in self.lines))
        self.remote = is_remote(workdir)
        self.events = workdir / "tensorboard"
        local = Path(tempfile.mkdtemp(prefix="tensorboard_")) if self.remote else self.events
        self.tensorboard = SummaryWriter(str(local), purge_step=resume_step + 1)
        self.local_events = local

    def write(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        if prefix == "train":
            line = json.dumps({"step": step, **metrics})
            self.lines.append(line)
            if self.remote:
                self.jsonl.write_text("".join(ln + "\n" for ln in self.lines))
            else:
                with self.jsonl.open("a") as f:
                    f.write(line + "\n")
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tensorboard.add_scalar(f"{prefix}/{name}", value, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.tensorboard.close()
        if self.remote:
            self.events.mkdir(parents=True, exist_ok=True)
            for event in self.local_events.iterdir():
                (self.events / event.name).write_bytes(event.read_bytes())
            shutil.rmtree(self.local_events, ignore_errors=True)
