"""Full fine-tuning: every weight of the base model trains.

    python -m training.full_finetune --preset tiny                   # offline, 2 CPU cores, about a minute
    python -m training.full_finetune --preset flan-t5-base           # the lab's model on DialogSum from the Hub
    torchrun --nproc_per_node=2 -m training.full_finetune --preset flan-t5-base   # DDP through the Trainer

Writes <run>/full/model (checkpoint + tokenizer, loadable on its own) and <run>/full/metrics.json.
`--resume` continues from the newest complete checkpoint (any kill, at any moment: see the README).
"""

import time
from pathlib import Path

from transformers import set_seed

from artifacts.contract import MODEL, save_folder_atomically
from training.cli import run_cli
from training.config import TrainConfig, parse_config, resolve
from training.methods import BUILTIN
from training.modeling import load_base_model, load_tokenizer
from training.recipe import (check_output_folder, finish, fit, make_trainer, prepare_run, tokenize,
                             trainer_arguments, training_metrics)


def run(cfg: TrainConfig, callbacks=()) -> Path:
    wall_start = time.perf_counter()
    method = BUILTIN["full"]
    cfg = resolve(cfg, method.settings(cfg.preset))
    out, resume_from = check_output_folder(cfg, method.name)
    args = trainer_arguments(cfg, out)
    data = prepare_run(cfg, args)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg, run_dir)
    set_seed(cfg.seed)
    model = load_base_model(cfg, run_dir)
    train, evalset = tokenize(data.splits["train"], tokenizer, cfg), tokenize(data.splits["validation"], tokenizer, cfg)
    trainer, keeper = make_trainer(model, tokenizer, args, train, evalset, resume_from, callbacks)
    fit(trainer, resume_from)
    if trainer.is_world_process_zero():
        model_dir = out / MODEL

        def save(tmp):
            trainer.save_model(str(tmp))  # model + tokenizer (processing_class), safetensors
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config lives in metrics.json

        save_folder_atomically(model_dir, save)
        metrics = training_metrics(method, cfg, data, train, evalset, trainer, keeper, model, wall_start, model_dir)
        finish(method, out, metrics)
        print(f"full fine-tune: {metrics['final']} -> {model_dir}")
    return run_dir


def main(argv=None) -> None:
    run_cli(lambda: run(parse_config(argv, description=__doc__)))


if __name__ == "__main__":
    main()
