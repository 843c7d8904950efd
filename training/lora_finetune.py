"""LoRA fine-tuning with peft: the base weights stay frozen, low-rank adapters on q and v train (the lab's r=32,
alpha=32, dropout 0.05). Only the adapter is saved: a few MB instead of the whole model.

    python -m training.lora_finetune --preset tiny
    python -m training.lora_finetune --preset flan-t5-base --lora_r 16 --learning_rate 5e-4
    accelerate launch --num_processes 2 -m training.lora_finetune --preset flan-t5-base

Writes <run>/lora/adapter (adapter_config.json + adapter_model.safetensors) and <run>/lora/metrics.json.
"""

import shutil
import time
from pathlib import Path

from peft import LoraConfig, TaskType, get_peft_model

from artifacts.contract import LORA_ADAPTER, LORA_METRICS, write_run_file
from training.config import TrainConfig, parse_config, resolve
from training.modeling import load_base_model, load_tokenizer
from training.recipe import (CHECKPOINTS, check_output_folder, fit, make_trainer, prepare_run, tokenize,
                             trainer_arguments, training_metrics, wipe)


def lora_config(cfg: TrainConfig) -> LoraConfig:
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, bias="none", task_type=TaskType.SEQ_2_SEQ_LM)


def run(cfg: TrainConfig, callbacks=()) -> Path:
    wall_start = time.perf_counter()
    cfg = resolve(cfg, "lora")
    out = check_output_folder(cfg, "lora")
    args = trainer_arguments(cfg, out)
    if cfg.overwrite and args.process_index == 0:
        wipe(out)
    data = prepare_run(cfg, args)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg, run_dir)
    model = get_peft_model(load_base_model(cfg, run_dir), lora_config(cfg))  # wraps (and mutates) the base
    train, evalset = tokenize(data.splits["train"], tokenizer, cfg), tokenize(data.splits["validation"], tokenizer, cfg)
    trainer, history = make_trainer(model, tokenizer, args, train, evalset, callbacks)
    train_seconds = fit(trainer, cfg, history)
    if trainer.is_world_process_zero():
        adapter_dir = run_dir / LORA_ADAPTER
        model.save_pretrained(str(adapter_dir))  # adapter_config.json + adapter_model.safetensors
        (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        metrics = training_metrics("lora", cfg, data, train, evalset, trainer, history, model, train_seconds,
                                   wall_start, adapter_dir)
        write_run_file(run_dir, LORA_METRICS, metrics)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        print(f"LoRA fine-tune: {metrics['final']} -> {adapter_dir}")
    return run_dir


def main(argv=None) -> None:
    run(parse_config(argv, description=__doc__))


if __name__ == "__main__":
    main()
