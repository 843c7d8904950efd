"""The whole experiment in one command: train each method of --methods, then evaluate base and every method, then
measure what serving each costs (training/serving_cost.py).

    python -m training --preset tiny                          # offline demo: full and LoRA, a few minutes on 2 CPUs
    python -m training --preset tiny --methods all            # every method that can run here (see the README)
    python -m training --preset quick                         # real flan-t5-small, a DialogSum subset (internet)
    python -m training --preset flan-t5-base --methods full,lora,ia3   # the real thing (GPU, internet)
    python -m training --preset tiny --methods all --sweep lr --seeds 3   # each method at its best rate, 3 seeds
    python -m training --preset tiny --resume                 # after a kill: finished methods are skipped, the
                                                              # interrupted one continues from its checkpoint
    python -m training --preset tiny --methods all --workers 2   # a job queue: 2 workers (training/jobs.py)

Takes every option of the recipes (see `python -m training.finetune --help`); the evaluation runs with its
defaults on the run folder (run `python -m training.evaluate --help` for its options, e.g. a --limit).
"""

import dataclasses
import sys
from pathlib import Path

from contract.files import EVAL_METRICS, evaluation_problem
from training import evaluate, finetune, jobs, serving_cost
from training.cli import run_cli
from training.config import TrainConfig, parse_config, run_folder_of, serving_dialogues_of
from training.methods import Method, resolve_methods
from training.preflight import check_run
from training.run_folder import AlreadyComplete, is_main_process, one_writer
from training.sweep import SweepFailed


def train_all(cfg: TrainConfig, methods: list[Method]) -> list[str]:
    """Train each method; a method whose sweep found no usable rate is reported and left out (the others go
    on). Returns those failures, one line each."""
    print(f"methods: {', '.join(m.name for m in methods)}", flush=True)
    failed = []
    for method in methods:
        print(f"training {method.name}", flush=True)  # the stage a person (and the app's build page) sees
        try:
            finetune.run(cfg, method)
        except AlreadyComplete:
            print(f"--resume: {method.name} is already complete; skipping it.", flush=True)
        except SweepFailed as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed.append(str(e))
    return failed


def evaluation_is_current(run_dir: Path) -> bool:
    """eval/ scores every complete method (contract.files.evaluation_problem); a broken one is said, and redone."""
    problem = evaluation_problem(run_dir)
    if problem not in (None, "no evaluation"):
        print(f"--resume: {problem}; evaluating again.", flush=True)
    return problem is None


def run_as_jobs(cfg: TrainConfig, methods: list[Method]) -> None:
    """--workers N (or --jobs_storage): the comparison as a queue of jobs (training/jobs.py)."""
    cfg = dataclasses.replace(cfg, output_dir=str(run_folder_of(cfg)))
    comparison = jobs.Comparison(cfg, methods, cfg.queue.workers)
    with one_writer(comparison.run_dir):
        comparison.setup()
        failed = comparison.run()
    if failed:
        raise SweepFailed(f"{len(failed)} job(s) failed twice and were left out of {comparison.run_dir} (the others "
                          f"are trained and evaluated): {' | '.join(f[:200] for f in failed)}")


def main(argv=None) -> None:
    def pipeline():
        cfg = parse_config(argv, description=__doc__)
        methods = resolve_methods(cfg.methods, cfg.method_config)
        check_run(cfg, methods)  # every option and method, before the run folder exists
        if cfg.queue.workers or cfg.queue.storage:
            return run_as_jobs(cfg, methods)
        run_dir = run_folder_of(cfg)
        with one_writer(run_dir):
            failed = train_all(cfg, methods)
            if not is_main_process():  # under torchrun, one process evaluates
                return
            if cfg.resume and evaluation_is_current(run_dir):
                print(f"--resume: {run_dir / EVAL_METRICS} already scores every method; skipping the evaluation.")
            else:
                print("evaluating base and every method on the test dialogues", flush=True)
                evaluate.run(evaluate.for_training(cfg, run_dir))
            serving_cost.measure_if_stale(run_dir, serving_dialogues_of(cfg))
        if failed:
            raise SweepFailed(f"{len(failed)} method(s) left out of {run_dir} (the others are trained and evaluated): "
                              + " | ".join(f.split(':')[0] for f in failed) + " (each said why above).")

    run_cli(pipeline)


if __name__ == "__main__":
    main()
