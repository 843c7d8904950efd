"""P10's benchmark at a tiny size (--smoke): the quick preset through `python app.py`, with the settings it should
have. Apart from tests/test_benchmarks.py so the suite's two workers share the slow smokes."""

import json
import subprocess
import sys

import pytest

from contract.files import EVAL_METRICS, read_run_file
from tests.helpers import ROOT, needs_shared
from tests.test_benchmarks import FIELDS

pytestmark = pytest.mark.slow  # the benchmark script runs the app in its own process


@needs_shared
def test_quick_preset_benchmark_smoke(tmp_path):
    """P10's mechanics: a fresh copy, `python app.py --preset quick` with one training step, until the page serves;
    the run it built has the quick preset's settings (flan-t5-small's architecture with random weights stands in
    for the Hub checkpoint)."""
    results, run_dir = tmp_path / "results.jsonl", tmp_path / "quick"
    out = subprocess.run([sys.executable, "p10_quick_preset.py", "--smoke", "--results", str(results),
                          "--keep_run", str(run_dir)], cwd=ROOT / "benchmarks", capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["benchmark"] == "P10" and FIELDS <= set(row) and row["ours"] > 0 and "random weights" in row["setup"]
    run = read_run_file(run_dir, "run.json")
    full = read_run_file(run_dir, "full/metrics.json")
    assert run["preset"] == "quick" and full["hyperparameters"]["num_train_epochs"] == 1
    assert full["hyperparameters"]["max_train_samples"] == 256 and full["data"]["train"] == 256
    assert full["hyperparameters"]["learning_rate"] == 3e-4  # flan-t5-small's settings
    assert read_run_file(run_dir, EVAL_METRICS)["n_dialogues"] == 2
