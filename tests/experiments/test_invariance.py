"""`python -m experiments.invariance`: accuracy, speed and batch invariance, on the tiny model:
the stored (static INT8) model is invariant, a dynamic INT8 graph of the same run is not."""

from __future__ import annotations

import shutil

import pytest

from experiments.invariance import main

pytestmark = pytest.mark.slow


def test_table_of_a_stored_model_and_a_dynamic_graph(
    tiny_bento_model, tiny_trained_run_dir, tmp_path, capsys
):
    from export import ExportConfig, export_onnx, quantize
    from tests.export.test_static import ODD_TEXT

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_trained_run_dir, run_dir)
    with (run_dir / "data" / "test.jsonl").open("r+") as f:  # a batch mate that moves the range
        rows = f.read()
        f.seek(0)
        f.write(f'{{"text": "{ODD_TEXT}", "label": 0}}\n' + rows)
    fp32 = export_onnx(run_dir / "model", tmp_path / "fp32")
    dynamic, _ = quantize(fp32, tmp_path / "dynamic", ExportConfig())
    args = [str(tiny_bento_model), str(dynamic), "--run-dir", str(run_dir), "--rounds", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("`python -m experiments.invariance ")
    stored, graph = (line for line in out.splitlines() if line.startswith("| `"))
    assert stored.startswith(f"| `{tiny_bento_model}` |")
    assert stored.endswith("| 0 / 0 / 0 | 0 / 0 / 0 |")  # static scales: bit-identical
    assert float(stored.split("|")[2]) >= 0.9  # test accuracy
    assert stored.split("|")[4].strip() == "100.00% / 0.000 / 0.0000"  # the first: itself
    diffs = [float(cell.split("/")[0]) for cell in graph.split("|")[5:7]]
    assert max(diffs) > 1e-5  # dynamic scales: scores move with the batch
