"""P9: `python -m training --preset tiny --methods all --sweep lr --seeds 3` from a fresh copy of the project: its
wall-clock seconds (goal: 20 minutes on 2 CPU cores), and each method's sweep overhead, the seconds of all its
trials (the served one included: it IS the model; the validation summaries at the rungs included) over one full
training of it (goal: <= 1.5x).

    python p9_sweep_seeds.py                                  # runs it (about 20 minutes on 2 CPU cores)
    python p9_sweep_seeds.py --smoke                          # mechanics: 2 methods, a few steps
    python p9_sweep_seeds.py --run_dir /tmp/p9/artifacts/tiny --seconds 1500   # a run of that command timed
                                                              # outside (e.g. under /usr/bin/time): record it
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, base_arguments, record

COMMAND = ["-m", "training", "--preset", "tiny", "--methods", "all", "--sweep", "lr", "--seeds", "3"]
SMOKE = ["--methods", "full,lora", "--max_train_samples", "32", "--max_eval_samples", "8", "--batch_size", "8",
         "--max_steps", "4", "--sweep_eval_dialogues", "4", "--tiny_pretrain_steps", "10",
         "--eval_limit", "4", "--sweep_floor", "0"]  # 2-step trials cannot beat the untrained model: mechanics only


def overheads(run_dir: Path) -> dict[str, float]:
    """Per method: all its trials' seconds / the training seconds of the served (chosen) trial."""
    result = {}
    for metrics_file in sorted(run_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        sweep = metrics_file.parent / "sweep.json"
        if sweep.exists():
            result[metrics_file.parent.name] = json.loads(sweep.read_text())["seconds"] / metrics["cost"]["train_seconds"]
    return result


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--run_dir", type=Path, help="a finished run of the command to record instead of running it")
    parser.add_argument("--seconds", type=float, help="its measured wall-clock seconds (with --run_dir)")
    args = parser.parse_args()
    command = [*COMMAND[:4], *(SMOKE if args.smoke else COMMAND[4:6]), *COMMAND[6:]]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, seconds = args.run_dir, args.seconds
        if run_dir is None:
            project = Path(tmp) / "project"
            shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns("artifacts", ".git", "__pycache__"))
            start = time.perf_counter()
            subprocess.run([sys.executable, *command], cwd=project, check=True)
            seconds, run_dir = time.perf_counter() - start, project / "artifacts" / "tiny"
        ratios = overheads(run_dir)
        chosen = {p.parent.name: json.loads(p.read_text())["chosen_learning_rate"] for p in run_dir.glob("*/sweep.json")}
    record("P9", seconds, 20 * 60.0, "wall-clock seconds of the command from a fresh copy; baseline = the 20-minute "
           "goal", "<= 1200 s on 2 CPU cores; sweep overhead <= 1.5x one training per method", args.results,
           training_command="python " + " ".join(command), sweep_overhead=ratios,
           sweep_overhead_max=max(ratios.values()), chosen_learning_rates=chosen)


if __name__ == "__main__":
    main()
