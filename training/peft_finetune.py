"""Parameter-efficient fine-tuning with peft: the base weights stay frozen and only the method's few parameters
train (LoRA, LoRA on all linear layers, DoRA, IA³, prompt tuning, prefix tuning, QLoRA, or your own
adapter_config.json). Only the adapter is saved: kilobytes to megabytes instead of the whole model.

    python -m training.peft_finetune --preset tiny --method ia3
    python -m training.peft_finetune --preset flan-t5-base --method lora --learning_rate 5e-4
    python -m training.peft_finetune --preset tiny --method_config lora_r4_qk=my/adapter_config.json
    accelerate launch --num_processes 2 -m training.peft_finetune --preset flan-t5-base --method lora

Writes <run>/<method>/adapter (adapter_config.json + adapter_model.safetensors) and <run>/<method>/metrics.json.
Which method is data (training/methods.py); this recipe is the same for all of them.
"""

import time
from pathlib import Path

from transformers import set_seed

from artifacts.contract import ADAPTER, save_folder_atomically
from training.cli import run_cli
from training.config import ConfigError, TrainConfig, parse_config, resolve
from training.methods import Method, resolve_methods
from training.modeling import load_base_model, load_tokenizer
from training.recipe import (check_output_folder, finish, fit, make_trainer, prepare_run, tokenize,
                             trainer_arguments, training_metrics)


def peft_model(method: Method, cfg: TrainConfig, run_dir: Path):
    from peft import get_peft_model

    if not method.quantize_4bit:
        base = load_base_model(cfg, run_dir)
        return get_peft_model(base, method.peft_config(base.config))  # wraps (and mutates) the base
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16)
    base = prepare_model_for_kbit_training(load_base_model(cfg, run_dir, quantization))
    return get_peft_model(base, method.peft_config(base.config))


def run(cfg: TrainConfig, method: Method = None, callbacks=()) -> Path:
    wall_start = time.perf_counter()
    if method is None:
        chosen = resolve_methods(cfg.method or ("" if cfg.method_config else "lora"), cfg.method_config)
        if len(chosen) != 1 or chosen[0].kind != "peft":
            raise ConfigError("training.peft_finetune trains one peft method: give --method NAME (not full) or "
                              "one --method_config; python -m training --methods trains several.")
        method = chosen[0]
    cfg = resolve(cfg, method.settings(cfg.preset))
    out, resume_from = check_output_folder(cfg, method.name)
    args = trainer_arguments(cfg, out)
    data = prepare_run(cfg, args)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg, run_dir)
    set_seed(cfg.seed)  # the adapter's initial weights do not depend on what ran before in this process
    model = peft_model(method, cfg, run_dir)
    train, evalset = tokenize(data.splits["train"], tokenizer, cfg), tokenize(data.splits["validation"], tokenizer, cfg)
    trainer, keeper = make_trainer(model, tokenizer, args, train, evalset, resume_from, callbacks)
    fit(trainer, resume_from)
    if trainer.is_world_process_zero():
        adapter_dir = out / ADAPTER

        def save(tmp):
            model.save_pretrained(str(tmp))  # adapter_config.json + adapter_model.safetensors
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template

        save_folder_atomically(adapter_dir, save)
        metrics = training_metrics(method, cfg, data, train, evalset, trainer, keeper, model, wall_start,
                                   adapter_dir)
        finish(method, out, metrics)
        print(f"{method.name}: {metrics['final']} -> {adapter_dir}")
    return run_dir


def main(argv=None) -> None:
    run_cli(lambda: run(parse_config(argv, description=__doc__)))


if __name__ == "__main__":
    main()
