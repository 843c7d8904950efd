"""A run folder on disk with random flan-t5-small-shaped weights (lm_head tied, see random_model) (base, full,
LoRA r=32 on q,v), laid out as the artifacts contract says, so P3/P4 load models exactly as the dashboard does."""

import json
from pathlib import Path

import torch
from common import random_model as untied_model
from peft import LoraConfig, TaskType, get_peft_model


def random_model(config, seed):
    # transformers 5 re-ties (or half-ties) a saved from-config T5's lm_head on loading, inconsistently between
    # checkpoints; tied weights load the same way every time, so all three models have the same size
    model = untied_model(config, seed)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    with torch.no_grad():  # random weights emit only <pad>, which decodes to nothing: zero the special tokens' rows
        model.shared.weight[:3] = 0  # (pad, eos, unk) so the models write visible (random) words, as trained ones do
    return model


def make_run(folder: Path, setup) -> Path:
    if (folder / "run.json").exists():
        return folder
    base = random_model(setup.config, seed=0)
    base.save_pretrained(folder / "base" / "model")
    setup.tokenizer.save_pretrained(folder / "base" / "model")
    full = random_model(setup.config, seed=1)
    full.save_pretrained(folder / "full" / "model")
    setup.tokenizer.save_pretrained(folder / "full" / "model")
    lora = get_peft_model(random_model(setup.config, seed=0), LoraConfig(
        r=32, lora_alpha=32, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM, init_lora_weights=False))
    lora.save_pretrained(folder / "lora" / "adapter")
    for name in ("full", "lora"):
        write_method_metrics(folder, name, described(name))
    (folder / "run.json").write_text(json.dumps({
        "schema_version": 1, "preset": "benchmark", "base_model": "base/model", "tokenizer": "base/model",
        "data_source": "none", "created_at": "", "versions": {}, "git_commit": None}))
    return folder


def described(name: str) -> dict:
    """What training writes about a method into metrics.json (its description and what it can do, e.g. merge)."""
    from training.capabilities import capabilities
    from training.methods import BUILTIN

    return {**BUILTIN[name].describe(), **capabilities(BUILTIN[name])}


def write_method_metrics(folder: Path, name: str, method: dict = None) -> None:
    """A schema-valid metrics.json: the artifacts contract lists a run's methods by these files."""
    from contract.files import method_metrics, write_run_file

    write_run_file(folder, method_metrics(name), {
        "schema_version": 1, "kind": name, **({"method": method} if method else {}), "created_at": "",
        "hyperparameters": {}, "seed": 0,
        "data": {"source": "none", "train": 0, "eval": 0, "skipped": 0, "truncated": 0},
        "parameters": {"total": 1, "trainable": 1, "trainable_percent": 100.0},
        "cost": {"wall_seconds": 0, "train_seconds": 0, "examples_per_second": 0, "tokens_per_second": 0,
                 "peak_memory_bytes": 0, "peak_memory_measure": "process_peak_rss", "device": "none",
                 "checkpoint_bytes": 0},
        "loss_history": [], "final": {"train_loss": None, "eval_loss": None, "steps": 0}})


def load_separate(folder: Path):
    """The lab's way: three independent model copies (base, full, and LoRA on its own copy of the base)."""
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    base = AutoModelForSeq2SeqLM.from_pretrained(folder / "base" / "model").eval()
    full = AutoModelForSeq2SeqLM.from_pretrained(folder / "full" / "model").eval()
    lora = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(folder / "base" / "model"),
                                     folder / "lora" / "adapter").eval()
    return {"base": base, "full": full, "lora": lora}


def make_all_methods_run(folder: Path, setup, names=None) -> Path:
    """make_run plus every CPU method of the registry (or those named), each adapter randomly initialised (so
    outputs differ)."""
    from peft import get_peft_model

    from training.methods import BUILTIN

    make_run(folder, setup)
    for name, method in BUILTIN.items():
        if (
            (names is not None and name not in names)
            or method.peft is None
            or method.needs_cuda
            or (folder / name).exists()
        ):
            continue
        config = method.peft_config(setup.config)
        if config.peft_type == "LORA":
            config.init_lora_weights = False  # random B: the adapter changes the output, as a trained one does
        get_peft_model(random_model(setup.config, seed=0), config).save_pretrained(folder / name / "adapter")
        write_method_metrics(folder, name, described(name))
    return folder


def load_separate_all(folder: Path):
    """One independent copy per model: base, full, and every adapter on its own fresh copy of the base."""
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    from contract.files import list_methods

    models = {"base": AutoModelForSeq2SeqLM.from_pretrained(folder / "base" / "model").eval()}
    for name in list_methods(folder):
        if (folder / name / "model").exists():
            models[name] = AutoModelForSeq2SeqLM.from_pretrained(folder / name / "model").eval()
        else:
            models[name] = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(folder / "base" / "model"),
                                                     folder / name / "adapter").eval()
    return models
