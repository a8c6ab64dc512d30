"""examples/finetune_and_evaluate.ipynb executed in a real Jupyter kernel (nbclient, ipykernel): a LoRA
fine-tune with TRL's SFTTrainer and EvalCallback on a tiny Llama built on the spot, the model evaluated in
memory against its base, the summary, comparison and charts shown inline. About 80 s on two CPU cores. The
notebook works in a temporary folder: the checkout stays clean."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "finetune_and_evaluate.ipynb"


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output["text"]
    return "\n".join(str(v) for v in output.get("data", {}).values())


def test_the_notebook_runs_from_fine_tuning_to_the_dashboard_link(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    shown = ["\n".join(_text(o) for o in c.outputs) for c in code]
    trained = next(s for s in shown if "errors:" in s)
    assert "('notebook-lora step 20'" in trained and "('notebook-lora step 40'" in trained
    assert "errors: []" in trained and "'eval_seconds'" in trained
    run_cell = next(c for c in code if c.source.startswith("run = evaluator.evaluate"))
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in run_cell.outputs)
    assert "notebook-lora final" in html and "open in the dashboard" in html
    charts = [c for c in code if ".plot_" in c.source]
    assert len(charts) == 3 and all(any("vega" in _text(o).lower() for o in c.outputs) for c in charts)
    assert "then open http://127.0.0.1:8501/browser?run=" in shown[-1]


def test_the_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
