"""notebooks/cifar10_experiments_FIXED.ipynb: executed end to end at its tiny size (every cell runs and draws its
plot), and the committed copy carries the plots of a real run at its CPU size."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "cifar10_experiments_FIXED.ipynb"
PLOTS = 5  # training curves, reconstructions, super-resolution, jitter, t-SNE


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {}) or o.get("output_type") == kind]


def _text(nb) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb, "stream"))


@pytest.mark.slow
def test_the_notebook_runs_at_its_tiny_size(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_NOTEBOOK_SCALE", "tiny")
    monkeypatch.setenv("PARITY_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.delenv("PARITY_CIFAR_ROOT", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert len(_outputs(nb, "image/png")) == PLOTS
    assert not _outputs(nb, "error")
    text = _text(nb)
    assert "scale tiny" in text and "FIXED     test PSNR" in text and "notebook  test PSNR" in text
    # both runs are the toolkit's own run folders, finished
    assert sorted(p.parent.parent.name for p in (tmp_path / "runs" / "tiny").glob("*/seed-0/metrics.json")) == [
        "fixed", "notebook"]


def test_the_committed_notebook_shows_a_cpu_run_and_its_plots():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert len(_outputs(nb, "image/png")) == PLOTS
    assert not _outputs(nb, "error")
    assert "scale cpu" in _text(nb) and "data imagefolder" in _text(nb)  # real CIFAR-10, not the procedural images
