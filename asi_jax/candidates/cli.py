"""Behind scripts/check_candidate.py: one candidate file through the policy and the checker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asi_jax.candidates.engineer import EngineerConfig, run_candidate


def check_file(path: str | Path, workdir: str | Path, config: EngineerConfig) -> dict[str, Any]:
    """The verdict as one JSON-ready dict: ok, stage, reason, figures, seconds."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"candidate file {str(path)!r} does not exist")
    result = run_candidate(path.read_text(), config, workdir)
    attempt = result.attempts[-1]
    return {
        "candidate": str(path),
        "ok": result.ok,
        "stage": result.stage,
        "reason": result.reason,
        "figures": (result.check or {}).get("figures", {}),
        "seconds": round(attempt.seconds, 2),
    }


def dumps(verdict: dict[str, Any]) -> str:
    return json.dumps(verdict, indent=2)
