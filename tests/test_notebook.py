"""notebooks/reinforce.ipynb runs from top to bottom (small budgets), so it can never rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "reinforce.ipynb"


def test_the_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_the_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel of this very interpreter, whatever kernels the machine has installed.
    spec = tmp_path / "jupyter" / "kernels" / "reinforce-jax-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "reinforce-jax tests", "language": "python"}))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("REINFORCE_NOTEBOOK_QUICK", "1")  # the notebook's small budgets
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="reinforce-jax-test",
                                     resources={"metadata": {"path": str(work)}})  # fmt: skip
    client.execute()  # a failing cell raises CellExecutionError with its traceback

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert text.count("Looks good!") == 4 and "Oops" not in text  # the notebook's check values
    assert "Episode: 0\tEpisode Return:" in text  # the notebook preset's own log line
    assert any("<progress" in h for h in html)  # the progress bar shows in Jupyter
    assert sum("reinforce-jax Run" in h for h in html) >= 3  # Run's HTML summary
    assert sum("<video" in h for h in html) == 2  # CartPole and the shipped lander
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # Run.plot figures
    assert "LunarLander-v3: 3 greedy episodes" in text
    assert (work / "lunarlander.mp4").stat().st_size > 0
    assert len(list((work / "runs").iterdir())) == 4
