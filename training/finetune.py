"""The fine-tuning recipe, one for every method: full fine-tuning trains every weight; a peft method (LoRA, DoRA,
IA³, prompt/prefix tuning, QLoRA, your own adapter_config.json) freezes the base and trains only its few
parameters. Which method is data (training/methods.py); what differs here is only how the model is built and
saved, chosen by the method's kind.

    python -m training.finetune --preset tiny --method full               # offline, 2 CPU cores, about a minute
    python -m training.finetune --preset tiny --method ia3
    python -m training.finetune --preset tiny --method_config lora_r4_qk=my/adapter_config.json
    python -m training.finetune --preset flan-t5-base --method lora --learning_rate 5e-4
    torchrun --nproc_per_node=2 -m training.finetune --preset flan-t5-base --method full   # DDP through the Trainer

Writes <run>/<method>/model (full: checkpoint + tokenizer, loadable on its own) or <run>/<method>/adapter
(adapter_config.json + adapter_model.safetensors), then <run>/<method>/metrics.json last. `--resume` continues
from the newest complete checkpoint (any kill, at any moment: see the README).
"""

import time
from pathlib import Path

from transformers import set_seed

from contract.files import ADAPTER, MODEL, save_folder_atomically
from contract.loading import nf4_quantization
from training.cli import run_cli
from training.config import ConfigError, TrainConfig, parse_config, resolve
from training.methods import Method, resolve_methods
from training.modeling import count_parameters, load_base_model, load_tokenizer
from training.run_folder import check_output_folder, finish, one_writer, prepare_run
from training.trainer import fit, make_trainer, optimizer_steps, tokenize, trainer_arguments, training_metrics


def build_model(method: Method, cfg: TrainConfig, run_dir: Path, total_steps: int):
    """The model the Trainer trains: the base itself (full), or the base wrapped by the method's peft config.
    An adapter with more trainable parameters than the whole base is refused unless --allow_large_adapter."""
    if method.kind == "full":
        return load_base_model(cfg, run_dir)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method.quantize_4bit:
        base = prepare_model_for_kbit_training(load_base_model(cfg, run_dir, nf4_quantization()))
    else:
        base = load_base_model(cfg, run_dir)
    base_size = count_parameters(base)["total"]
    model = get_peft_model(base, method.peft_config(base.config, total_steps))  # wraps (and mutates) the base
    trainable = count_parameters(model)["trainable"]
    if trainable > base_size and not cfg.allow_large_adapter:
        raise ConfigError(f"{method.name}: its adapter trains {trainable:,} parameters, more than the whole base "
                          f"model ({base_size:,}); a peft method is meant to be small (check r or its size "
                          "field). Pass --allow_large_adapter if this is intended.")
    return model


def save_weights(method: Method, trainer, model, out: Path) -> Path:
    """<method>/model (full: model + tokenizer) or <method>/adapter (peft), complete or absent."""
    folder = out / (MODEL if method.kind == "full" else ADAPTER)

    def save(tmp):
        if method.kind == "full":
            trainer.save_model(str(tmp))  # model + tokenizer (processing_class), safetensors
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config lives in metrics.json
        else:
            model.save_pretrained(str(tmp))  # adapter_config.json + adapter_model.safetensors
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template

    save_folder_atomically(folder, save)
    return folder


def run(cfg: TrainConfig, method: Method, callbacks=()) -> Path:
    cfg = resolve(cfg, method.settings(cfg.preset))
    with one_writer(Path(cfg.output_dir)):
        return train(cfg, method, callbacks)


def train(cfg: TrainConfig, method: Method, callbacks=()) -> Path:
    """Train `method` into the run folder of the resolved `cfg` (held by this process)."""
    wall_start = time.perf_counter()
    out, resume_from = check_output_folder(cfg, method.name)
    args = trainer_arguments(cfg, out)
    data = prepare_run(cfg, args)
    run_dir = Path(cfg.output_dir)
    tokenizer = load_tokenizer(cfg, run_dir)
    train, evalset = tokenize(data.splits["train"], tokenizer, cfg), tokenize(data.splits["validation"], tokenizer, cfg)
    set_seed(cfg.seed)  # initial weights (an adapter's) do not depend on what ran before in this process
    model = build_model(method, cfg, run_dir, optimizer_steps(cfg, len(train.dataset), args.world_size))
    trainer, keeper = make_trainer(model, tokenizer, args, train, evalset, resume_from, callbacks)
    fit(trainer, resume_from)
    if trainer.is_world_process_zero():
        weights = save_weights(method, trainer, model, out)
        metrics = training_metrics(method, cfg, data, train, evalset, trainer, keeper, model, wall_start, weights)
        finish(method.name, out, metrics)
        print(f"{method.name}: {metrics['final']} -> {weights}")
    return run_dir


def the_one_method(cfg: TrainConfig) -> Method:
    """The recipe trains one method: --method NAME, or one --method_config."""
    if not cfg.method and len(cfg.method_config) != 1:
        raise ConfigError("training.finetune trains one method: give --method NAME (full, lora, ia3, ...) or one "
                          "--method_config NAME=PATH; `python -m training --methods a,b` trains several.")
    chosen = resolve_methods(cfg.method or "", cfg.method_config)
    if len(chosen) != 1:
        raise ConfigError(f"training.finetune trains one method; this asks for {', '.join(m.name for m in chosen)}. "
                          "Use `python -m training --methods ...` for several.")
    return chosen[0]


def main(argv=None) -> None:
    def train_one():
        cfg = parse_config(argv, description=__doc__)
        return run(cfg, the_one_method(cfg))

    run_cli(train_one)


if __name__ == "__main__":
    main()
