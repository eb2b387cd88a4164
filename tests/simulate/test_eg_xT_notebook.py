"""notebooks/eg_xT.ipynb runs top to bottom on a pipeline run."""

import nbformat
from nbclient import NotebookClient

from capml.cli import ROOT


def test_eg_xT_notebook_executes(pipeline_run, monkeypatch):
    monkeypatch.setenv("CAPML_SIM_WORKDIR", str(pipeline_run))
    notebook = nbformat.read(ROOT / "notebooks" / "eg_xT.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "3 relaxed configurations, 6 MD runs" in text
    assert "Eg(x, T) table" in text and "per-configuration averages" in text
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2
