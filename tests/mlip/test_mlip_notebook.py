"""notebooks/mlip.ipynb runs top to bottom on a run directory written by capml.mlip.train.run."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from capml.cli import ROOT


def test_mlip_notebook_executes(tiny_base, monkeypatch):
    monkeypatch.setenv("CAPML_MLIP_RUN", str(Path(tiny_base["model"]).parents[1]))
    notebook = nbformat.read(ROOT / "notebooks" / "mlip.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "frames per split" in text and "forces: MAE" in text
