"""notebooks/gnn.ipynb runs top to bottom (on the test set, training a small model)."""


import nbformat
from nbclient import NotebookClient

from capml.cli import ROOT


def test_gnn_notebook_executes(gap_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("CAPML_GNN_DATASET", str(gap_dataset))
    monkeypatch.setenv("CAPML_GNN_TARGET", "gap_gfn2")
    monkeypatch.setenv("CAPML_GNN_CACHE", str(tmp_path / "graphs"))
    monkeypatch.setenv("CAPML_GNN_OUT", str(tmp_path / "run"))
    monkeypatch.setenv("CAPML_GNN_EPOCHS", "5")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(ROOT / "notebooks" / "gnn.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "run" / "metrics.json").exists() and (tmp_path / "run" / "edge_importance.csv").exists()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
