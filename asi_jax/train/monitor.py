"""Training-log quality checks that stop a run early, with a reason (ASI-Arch's checks).

- a non-finite loss (NaN / inf),
- a loss abnormally low for the task (below `min_loss`: the model is reading the answers,
  e.g. a mixer leaking future tokens),
- steps slower than the budget (`max_step_seconds`) for `patience` logged steps in a row.
"""

from __future__ import annotations

import math

from asi_jax.train.config import MonitorConfig


class QualityMonitor:
    def __init__(self, config: MonitorConfig):
        self.config = config
        self._slow = 0

    def check(self, step: int, loss: float, step_seconds: float) -> str | None:
        """The reason to stop at `step`, or None to continue."""
        if not math.isfinite(loss):
            return f"non-finite loss {loss} at step {step}"
        if loss < self.config.min_loss:
            return (
                f"loss {loss:.4g} at step {step} is below {self.config.min_loss:.4g}, "
                "abnormally low for this task (information leak?)"
            )
        if step_seconds > self.config.max_step_seconds:
            self._slow += 1
            if self._slow >= self.config.patience:
                return (
                    f"steps take {step_seconds:.3g} s, over the {self.config.max_step_seconds:.3g}"
                    f" s budget for {self._slow} logged steps in a row"
                )
        else:
            self._slow = 0
        return None
