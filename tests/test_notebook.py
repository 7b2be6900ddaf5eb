"""notebooks/quickstart.ipynb, executed as on Colab but at a tiny size (its parameters come
from ASI_NOTEBOOK_* variables): nbclient on a kernel of this interpreter runs every cell, a
real evolution (one baseline, one candidate, sandboxed), and the report is shown inline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
# linear_attention compiles fastest of the baselines; verification is skipped.
TINY = {
    "CANDIDATES": "1",
    "STEPS": "10",
    "BASELINES": "linear_attention",
    "REFERENCE": "linear_attention",
    "PROMOTE": "0",
    "WORKERS": "1",
    "SIZE": "tiny",
}


def _texts(cell) -> list[str]:
    """Everything a cell showed: printed streams and each displayed representation."""
    out = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            out.append(output["text"])
        elif "data" in output:
            out.extend(str(v) for v in output["data"].values())
    return out


def test_the_committed_notebook_is_valid_with_its_outputs_cleared():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert len(code) >= 8 and notebook.metadata.kernelspec.name == "python3"
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_a_tiny_evolution_and_shows_its_report(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    for name, value in {**TINY, "WORKDIR": str(workdir)}.items():
        monkeypatch.setenv(f"ASI_NOTEBOOK_{name}", value)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the tiny size, even beside an accelerator
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError, naming the cell and its traceback, if any cell fails.
    NotebookClient(notebook, kernel_name="python3", timeout=600,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()  # fmt: skip
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in cells for o in c.outputs if o["output_type"] == "error"]
    shown = "\n".join(t for c in cells for t in _texts(c))
    # The kernel is this interpreter (the venv's), and the repository was found, not installed.
    assert f"python: {sys.executable}\n" in shown
    assert f"repository: {ROOT}\n" in shown and "pip install" not in shown
    assert "accelerator: cpu (" in shown and "sandbox layers:" in shown

    board = json.loads((workdir / "leaderboard.json").read_text())
    assert board["run"]["state"] == "finished" and "verify" not in board
    rows = board["explore"]["ranking"]
    assert sorted(r["kind"] for r in rows) == ["baseline", "candidate"]
    assert all(r["status"] == "evaluated" for r in rows), [r["failure_reason"] for r in rows]
    assert rows[0]["params"] and board["config"]["explore"]["model"]["d_model"] == 32

    markdown = [o["data"]["text/markdown"] for c in cells for o in c.outputs
                if "text/markdown" in o.get("data", {})]  # fmt: skip
    assert len(markdown) == 1 and "**explore**: 2 evaluated, 0 failed; benchmark: " in markdown[0]
    for rank, row in enumerate(rows, 1):
        assert f"| {rank} | {row['name']} | {row['kind']} | evaluated |" in markdown[0]

    frames = [o["data"]["text/html"] for c in cells for o in c.outputs
              if "text/html" in o.get("data", {})]  # fmt: skip
    assert len(frames) == 1 and frames[0].startswith("<iframe srcdoc=")
    page = (workdir / "report.html").read_text()
    assert 'id="leaderboard"' in page and all(r["name"] in page for r in rows)
    assert "&lt;h2 id=&quot;leaderboard&quot;&gt;Leaderboard&lt;/h2&gt;" in frames[0]
