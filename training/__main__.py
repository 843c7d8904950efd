"""The whole experiment in one command: train each method of --methods, then evaluate base and every method.

    python -m training --preset tiny                          # offline demo: full and LoRA, a few minutes on 2 CPUs
    python -m training --preset tiny --methods all            # every method that can run here (see the README)
    python -m training --preset flan-t5-base --methods full,lora,ia3   # the real thing (GPU, internet)
    python -m training --preset tiny --resume                 # after a kill: finished methods are skipped, the
                                                              # interrupted one continues from its checkpoint

Takes every option of the recipes (see `python -m training.finetune --help`); the evaluation runs with its
defaults on the run folder (run `python -m training.evaluate --help` for its options, e.g. a --limit).
"""

from pathlib import Path

from contract.files import EVAL_METRICS, list_methods, read_run_file
from training import evaluate, finetune
from training.cli import run_cli
from training.config import TrainConfig, parse_config
from training.methods import resolve_methods
from training.run_folder import AlreadyComplete, is_main_process


def train_all(cfg: TrainConfig) -> Path:
    methods = resolve_methods(cfg.methods, cfg.method_config)
    print(f"methods: {', '.join(m.name for m in methods)}", flush=True)
    run_dir = Path(cfg.output_dir or Path("artifacts") / cfg.preset)
    for method in methods:
        try:
            run_dir = finetune.run(cfg, method)
        except AlreadyComplete:
            print(f"--resume: {method.name} is already complete; skipping it.", flush=True)
    return run_dir


def evaluation_is_current(run_dir: Path) -> bool:
    """eval/metrics.json exists and scores every complete method of the run."""
    if not (run_dir / EVAL_METRICS).exists():
        return False
    scored = read_run_file(run_dir, EVAL_METRICS)["scores"]["per_row"]
    return all(m in scored for m in list_methods(run_dir))


def main(argv=None) -> None:
    def pipeline():
        cfg = parse_config(argv, description=__doc__)
        run_dir = train_all(cfg)
        if not is_main_process():  # under torchrun, one process evaluates
            return
        if cfg.resume and evaluation_is_current(run_dir):
            print(f"--resume: {run_dir / EVAL_METRICS} already scores every method; skipping the evaluation.")
            return
        evaluate.run(evaluate.EvalConfig(run=str(run_dir), prompt_template=cfg.prompt_template,
                                         max_source_length=cfg.max_source_length, limit=cfg.eval_limit))

    run_cli(pipeline)


if __name__ == "__main__":
    main()
