"""P9: `python -m training --preset tiny --methods all --sweep lr --seeds 3` against the same command without
`--sweep`, back to back from one fresh copy of the project in one script: the ratio of their wall-clock seconds
(goal: <= 1.2x: a 3-seed run trains 3 models per method anyway), and per method the optimizer steps of all its
sweep's legs over one training's steps (goal: <= 1.5x, from sweep.json) and the seconds of its legs (their
validation scoring included) over the served model's own training. With --preset_run (or --ratio, which has one),
per method ROUGE-1 at the preset rate vs at the swept rate and the difference's 95% interval from a two-level
bootstrap (each run's seeds, then the shared test dialogues): the README's preset-vs-swept table.

    python p9_sweep_seeds.py --ratio                          # both commands, back to back (about 1.5 h on 2 cores)
    python p9_sweep_seeds.py --ratio --methods full,lora,ia3  # the same on some methods (said in the row)
    python p9_sweep_seeds.py --smoke                          # mechanics: LoRA, 2 seeds, a few steps, both
    python p9_sweep_seeds.py                                  # the swept command alone
    python p9_sweep_seeds.py --run_dir /tmp/p9/artifacts/tiny --seconds 1500   # a run of that command timed
                                                              # outside (e.g. under /usr/bin/time): record it
    python p9_sweep_seeds.py --run_dir ... --seconds ... --preset_run /tmp/preset/artifacts/tiny   # + the table
    python p9_sweep_seeds.py --floor                          # P9-floor: the same command WITHOUT --sweep

P9-floor is the untuned command's wall-clock seconds and its trainings' own seconds, against P9's 20-minute goal
(--ratio and --smoke record it too).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import base_arguments, fresh_copy, record

from contract.files import SWEEP_JSON, list_methods, read_evaluation, read_run_file
from scoring.rouge import load_rouge_metric
from scoring.stats import bootstrap_ci_seeds, bootstrap_difference_seeds

COMMAND = ["-m", "training", "--preset", "tiny", "--methods", "all", "--sweep", "lr", "--seeds", "3"]
SMOKE = ["--methods", "lora", "--max_train_samples", "32", "--max_eval_samples", "8", "--batch_size", "8",
         "--max_steps", "4", "--sweep_eval_dialogues", "4", "--tiny_pretrain_steps", "10",
         "--eval_limit", "4", "--sweep_floor", "0"]  # 2-step trials cannot beat the untrained model: mechanics only


def overheads(run_dir: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per method: its sweep's optimizer steps over one training's (the issue's <= 1.5x); the seconds of all its
    legs (and their validation scoring) over the served model's training seconds; and (its legs + its extra
    seeds) / (as many trainings as it has seeds, each as long as the served one): what --sweep costs over the same
    command without it, per method."""
    steps, seconds, over_untuned = {}, {}, {}
    for metrics_file in sorted(run_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        sweep_file = metrics_file.parent / SWEEP_JSON
        if sweep_file.exists():
            sweep, one = json.loads(sweep_file.read_text()), metrics["cost"]["train_seconds"]
            seeds = [s["train_seconds"] for s in metrics.get("seeds", [])]
            name = metrics_file.parent.name
            steps[name] = sweep["steps_over_one_training"]
            seconds[name] = sweep["seconds"] / one
            over_untuned[name] = (sweep["seconds"] + sum(seeds)) / (one * (1 + len(seeds)))
    return steps, seconds, over_untuned


def per_seed_rouge1(run_dir: Path) -> tuple[dict, list[str], list[int]]:
    """({method: seeds x dialogues per-row ROUGE-1}, the dialogue ids, each dialogue's weight: its references) from
    the run's evaluation: the served seed's scores as written, the other seeds' summaries scored again."""
    metrics, rows = read_evaluation(run_dir)
    rouge, references = load_rouge_metric(), [r["references"] for r in rows]
    scores = {}
    for m in metrics["models"]:
        if m == "base":
            continue
        seeds = [[r["rouge"][m]["rouge1"] for r in rows]]
        for seed in map(str, metrics["seeds"][m]["all"][1:]):
            seeds.append(rouge.compute(predictions=[r["seed_outputs"][m][seed] for r in rows], references=references,
                                       protocol="per_row", use_aggregator=False)["rouge1"])
        scores[m] = seeds
    return scores, [r["id"] for r in rows], [len(r) for r in references]


def preset_vs_swept(preset_run: Path, swept_run: Path) -> dict:
    """Per method in both runs: its rate, ROUGE-1 [95% CI] in each run, and swept - preset [95% CI]."""
    preset, ids, weights = per_seed_rouge1(preset_run)
    swept, swept_ids, _ = per_seed_rouge1(swept_run)
    if ids != swept_ids:
        raise SystemExit(
            f"--preset_run {preset_run} was evaluated on other dialogues than {swept_run}: not comparable."
        )
    table = {}
    for m in [m for m in swept if m in preset]:
        rates = [read_run_file(run, f"{m}/metrics.json")["hyperparameters"]["learning_rate"]
                 for run in (preset_run, swept_run)]
        difference = bootstrap_difference_seeds(preset[m], swept[m], weights)
        table[m] = {"preset_rate": rates[0], "swept_rate": rates[1], "seeds": len(swept[m]),
                    "preset": bootstrap_ci_seeds(preset[m], weights), "swept": bootstrap_ci_seeds(swept[m], weights),
                    "difference": difference, "worse_beyond_ci": difference[2] < 0}
    return table


def markdown(table: dict, swept_run: Path) -> str:
    lines = [
        "| method | preset rate → swept rate (rates tried) | ROUGE-1 at the preset rate | ROUGE-1 at "
        "the swept rate | swept − preset [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for m, row in table.items():
        sweep = json.loads((swept_run / m / SWEEP_JSON).read_text())
        served = "the preset rate (none beat the untrained model)" if sweep["below_untrained"] else \
            f"{row['swept_rate']:.2g}"
        cell = [f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for v in (row["preset"], row["swept"], row["difference"])]
        lines.append(
            f"| `{m}` | {row['preset_rate']:.2g} → {served} ({len(sweep['trials'])}) | {cell[0]} | {cell[1]} "
            f"| {cell[2]}{' **worse**' if row['worse_beyond_ci'] else ''} |"
        )
    return "\n".join(lines)


def untuned(command: list[str]) -> list[str]:
    """The same command without --sweep: the preset rates, the same methods and seeds."""
    return [a for a in command if a not in ("--sweep", "lr")]


def record_floor(run_dir: Path, seconds: float, command: list[str], results: Path) -> None:
    """P9-floor: a run of the untuned command, its wall-clock seconds and the seconds its trainings took (every
    method's served seed and extra seeds), both against P9's goal."""
    trainings = []
    for method in list_methods(run_dir):
        metrics = read_run_file(run_dir, f"{method}/metrics.json")
        trainings += [metrics["cost"]["train_seconds"], *(s["train_seconds"] for s in metrics.get("seeds", []))]
    record("P9-floor", seconds, 20 * 60.0, "wall-clock seconds of the P9 command WITHOUT --sweep from a fresh copy; "
           "baseline = P9's 20-minute goal", "none of its own: no sweep makes P9 faster than this", results,
           training_command="python " + " ".join(command), trainings=len(trainings),
           training_seconds=sum(trainings), training_seconds_range=[min(trainings), max(trainings)])


def timed_in_fresh_copy(command: list[str], tmp: str, output_dir: str | None = None) -> tuple[float, Path]:
    """Run `command` in a fresh copy of the project (no artifacts): (its wall-clock seconds, its run folder)."""
    project = Path(tmp) / "project"
    if not project.exists():
        fresh_copy(project)
    start = time.perf_counter()
    subprocess.run([sys.executable, *command, *(["--output_dir", output_dir] if output_dir else [])], cwd=project,
                   check=True)
    return time.perf_counter() - start, project / (output_dir or "artifacts/tiny")


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--run_dir", type=Path, help="a finished run of the command to record instead of running it")
    parser.add_argument("--seconds", type=float, help="its measured wall-clock seconds (with --run_dir)")
    parser.add_argument("--floor", action="store_true",
                        help="run (or record, with --run_dir) the command without --sweep: the P9-floor row")
    parser.add_argument("--ratio", action="store_true",
                        help="run the command without --sweep, then with it, from one fresh copy: P9's ratio")
    parser.add_argument("--methods", default="all", help="the methods of the command (default: all)")
    parser.add_argument("--preset_run", type=Path, help="a finished run of the command without --sweep (same seeds): "
                                                        "adds the preset-vs-swept table (--smoke runs one)")
    args = parser.parse_args()
    methods = SMOKE if args.smoke else ["--methods", args.methods]
    seeds = ["--seeds", "2"] if args.smoke else COMMAND[-2:]
    command = [*COMMAND[:4], *methods, *COMMAND[6:-2], *seeds]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, seconds, preset_run, preset_seconds = args.run_dir, args.seconds, args.preset_run, None
        if args.floor:
            if run_dir is None:
                seconds, run_dir = timed_in_fresh_copy(untuned(command), tmp)
            record_floor(run_dir, seconds, untuned(command), args.results)
            return
        if run_dir is None:
            if args.smoke or args.ratio:  # the same command at the preset rates first: the floor and the table
                preset_seconds, preset_run = timed_in_fresh_copy(untuned(command), tmp, "artifacts/preset")
            seconds, run_dir = timed_in_fresh_copy(command, tmp)
        steps, ratios, over_untuned = overheads(run_dir)
        chosen = {
            p.parent.name: json.loads(p.read_text())["chosen_learning_rate"] for p in run_dir.glob("*/sweep.json")
        }
        table = preset_vs_swept(preset_run, run_dir) if preset_run else None
        if table:
            print(markdown(table, run_dir))
        if preset_seconds is not None:
            record_floor(preset_run, preset_seconds, untuned(command), args.results)
    baseline, unit = (preset_seconds, "wall-clock seconds of the command from a fresh copy; baseline = the same "
                      "command without --sweep, run just before it in the same script") if preset_seconds else (
        20 * 60.0, "wall-clock seconds of the command from a fresh copy; baseline = the 20-minute goal")
    record("P9", seconds, baseline, unit, "ratio <= 1.2 (over the command without --sweep); sweep steps <= 1.5x one "
           "training per method", args.results, training_command="python " + " ".join(command),
           sweep_steps_over_one_training=steps, sweep_steps_max=max(steps.values()), sweep_overhead=ratios,
           sweep_overhead_max=max(ratios.values()), sweep_command_over_untuned=over_untuned,
           chosen_learning_rates=chosen, **({"preset_vs_swept": table} if table else {}))


if __name__ == "__main__":
    main()
