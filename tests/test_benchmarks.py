"""Each CPU benchmark runs at a tiny size (--smoke) and appends well-formed rows: they keep working. No timing
assertions here: the figures live in benchmarks/README.md."""

import json
import subprocess
import sys

import pytest

from tests.helpers import CHROMIUM, ROOT

pytestmark = pytest.mark.slow  # each smoke runs a benchmark script in its own process

FIELDS = {"benchmark", "ours", "baseline", "ratio", "unit", "device", "date", "command"}


@pytest.mark.parametrize("script,ids", [("p1_eval_generation.py", ["P1"]), ("p2_training.py", ["P2", "P2"]),
                                        ("p3_serving_memory.py", ["P3", "P3"]), ("p4_latency.py", ["P4"]),
                                        ("p3b_p4b_all_methods.py", ["P3b", "P4b"]),
                                        ("p7_p8_serving.py", None),
                                        ("p9_sweep_seeds.py", ["P9-floor", "P9"]),
                                        ("p11_int8.py", ["P11", "P11-memory", "P11-core"])])
def test_benchmark_smoke(tmp_path, script, ids):
    results = tmp_path / "results.jsonl"
    out = subprocess.run([sys.executable, script, "--smoke", "--results", str(results)], cwd=ROOT / "benchmarks",
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    written = [json.loads(line) for line in results.read_text().splitlines()]
    if ids is None:  # P7 (2 rows), and P8 where Chromium is installed
        ids = ["P7", "P7"] + (["P8"] if CHROMIUM.exists() else [])
    assert [r["benchmark"] for r in written] == ids and all(FIELDS <= set(r) for r in written)
    assert all(r["ours"] > 0 and r["baseline"] > 0 and r["ratio"] == pytest.approx(r["ours"] / r["baseline"])
               for r in written)
    if script == "p9_sweep_seeds.py":  # the floor and the preset-vs-swept table from the smoke run at the preset rates
        floor, p9 = written
        assert "--sweep" not in floor["training_command"].split() and floor["trainings"] == 2  # LoRA x 2 seeds
        assert 0 < floor["training_seconds_range"][0] <= floor["training_seconds_range"][1] < floor["training_seconds"]
        assert set(p9["sweep_command_over_untuned"]) == set(p9["sweep_steps_over_one_training"]) == {"lora"}
        assert p9["baseline"] == floor["ours"]  # the ratio: the swept command over the same without --sweep
        table = p9["preset_vs_swept"]
        assert set(table) == {"lora"} and all(
            len(t["difference"]) == 3 and t["seeds"] == 2 for t in table.values()
        )
        assert all(t["difference"][1] <= t["difference"][0] <= t["difference"][2] for t in table.values())


def test_gpu_script_smoke_runs_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, "gpu_training_cost.py", "--smoke", "--out", str(tmp_path / "gpu.json")],
                         cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert {r["kind"] for r in report["training"]} == {"full", "lora"}
    assert report["evaluation"]["total_seconds"] > 0
