"""Full fine-tuning: every weight of the base model trains.

    python -m training.full_finetune --preset tiny                   # offline, 2 CPU cores, about a minute
    python -m training.full_finetune --preset flan-t5-base           # the lab's model on DialogSum from the Hub
    torchrun --nproc_per_node=2 -m training.full_finetune --preset flan-t5-base   # DDP through the Trainer

Writes <run>/full/model (checkpoint + tokenizer, loadable on its own) and <run>/full/metrics.json.
"""

import shutil
import time
from pathlib import Path

from artifacts.contract import FULL_METRICS, FULL_MODEL, write_run_file
from training.config import TrainConfig, parse_config, resolve
from training.modeling import load_base_model, load_tokenizer
from training.recipe import (CHECKPOINTS, check_output_folder, fit, make_trainer, prepare_run, tokenize,
                             trainer_arguments, training_metrics, wipe)


def run(cfg: TrainConfig, callbacks=()) -> Path:
    wall_start = time.perf_counter()
    cfg = resolve(cfg, "full")
    out = check_output_folder(cfg, "full")
    args = trainer_arguments(cfg, out)
    if cfg.overwrite and args.process_index == 0:
        wipe(out)
    data = prepare_run(cfg, args)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg, run_dir)
    model = load_base_model(cfg, run_dir)
    train, evalset = tokenize(data.splits["train"], tokenizer, cfg), tokenize(data.splits["validation"], tokenizer, cfg)
    trainer, history = make_trainer(model, tokenizer, args, train, evalset, callbacks)
    train_seconds = fit(trainer, cfg, history)
    if trainer.is_world_process_zero():
        model_dir = run_dir / FULL_MODEL
        trainer.save_model(str(model_dir))  # model + tokenizer (processing_class), safetensors
        (model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config lives in metrics.json
        metrics = training_metrics("full", cfg, data, train, evalset, trainer, history, model, train_seconds,
                                   wall_start, model_dir)
        write_run_file(run_dir, FULL_METRICS, metrics)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        print(f"full fine-tune: {metrics['final']} -> {model_dir}")
    return run_dir


def main(argv=None) -> None:
    run(parse_config(argv, description=__doc__))


if __name__ == "__main__":
    main()
