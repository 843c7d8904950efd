"""The fine-tuning methods a run can compare: one registry, each method a small spec (data, not code branches).

A method is `full` (every weight trains) or a peft method whose config is written exactly as the
`adapter_config.json` peft saves; its default optimisation settings are given per preset with a one-line reason.
User-defined methods come from such a file: `--method_config NAME=PATH/adapter_config.json`.

    python -m training --preset tiny --methods full,lora,ia3     # any comma list, or `all`
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from contract.protocol import RESERVED_FOLDERS
from training.config import ConfigError, Hyper

TASK = {"task_type": "SEQ_2_SEQ_LM"}
LAB_LORA = {**TASK, "peft_type": "LORA", "r": 32, "lora_alpha": 32, "lora_dropout": 0.05,
            "target_modules": ["q", "v"], "bias": "none"}
# FLAN-T5's feed-forward is gated: wi_0, wi_1, wo (a plain "wi" matches nothing there). Checked by counting the
# trainable parameters (tests/test_methods.py).
ALL_LINEAR = ["q", "k", "v", "o", "wi_0", "wi_1", "wo"]


def per_preset(tiny: Hyper, small: Hyper, base: Hyper) -> dict[str, Hyper]:
    return {"tiny": tiny, "flan-t5-small": small, "flan-t5-base": base}


@dataclass(frozen=True)
class Method:
    name: str                     # folder name in the run and the key everywhere (evaluation, dashboard, API)
    label: str                    # what people read in the page and charts
    peft: Optional[dict]          # adapter_config.json fields; None = full fine-tuning
    hyper: dict[str, Hyper]       # per preset: learning rate, epochs, batch, warm-up, and why
    needs_cuda: bool = False
    quantize_4bit: bool = False   # base loaded 4-bit (bitsandbytes nf4, bf16 compute): QLoRA
    why: str = ""

    @property
    def kind(self) -> str:
        return "full" if self.peft is None else "peft"

    def peft_config(self, model_config=None, total_steps: Optional[int] = None):
        """A fresh peft config object (get_peft_model mutates what it is given, so never share one). With the
        base's config, prefix tuning gets T5's attention width: peft assumes d_model, but T5's keys and values are
        num_heads x d_kv wide, which differs in flan-t5-small (6 x 64 = 384, d_model 512) and breaks its prefixes.
        AdaLoRA's budget schedule spans the run: total_step is the run's optimizer steps unless the config says."""
        from peft.config import PeftConfigMixin

        doc = json.loads(json.dumps(self.peft))
        if doc.get("peft_type") == "ADALORA" and not doc.get("total_step"):
            doc["total_step"] = total_steps or 1000  # 1000: only to check the config before the run is known
        config = PeftConfigMixin.from_peft_type(**doc)
        if config.peft_type == "PREFIX_TUNING" and config.token_dim is None and hasattr(model_config, "d_kv"):
            config.token_dim = model_config.num_heads * model_config.d_kv
        return config

    def settings(self, preset: str) -> Hyper:
        return self.hyper.get(preset) or self.hyper["flan-t5-base"]

    def describe(self) -> dict:
        """What metrics.json records about the method (the dashboard reads labels from here)."""
        return {"name": self.name, "label": self.label, "peft_type": (self.peft or {}).get("peft_type", "FULL"),
                "base_quantization": "nf4" if self.quantize_4bit else None}


def H(lr, epochs, batch, warmup=0.03, why=""):
    return Hyper(lr, epochs, batch, warmup, why)


TINY_FULL = H(3e-3, 8, 16, 0.05, "a 0.9M-parameter T5 trained from copy pre-training: high rate, short epochs")

BUILTIN: dict[str, Method] = {m.name: m for m in [
    Method("full", "Full fine-tune", None, per_preset(
        TINY_FULL, H(3e-4, 3, 32, why="small models tolerate and need a larger rate"),
        H(5e-5, 3, 32, why="AdamW 5e-5 is the stable rate for all-weights T5-base; batch 32 because a GPU step is "
                           "launch-bound at this size (benchmarks P5)")),
           why="every weight trains: the quality ceiling, and the most memory and disk"),
    Method("lora", "LoRA (lab: r=32, q v)", LAB_LORA, per_preset(
        H(1e-2, 10, 16, 0.05, "fresh low-rank matrices start at zero: a high rate to move in minutes"),
        H(2e-3, 3, 32, why="twice the base preset's rate for the smaller model"),
        H(1e-3, 3, 32, why="the lab's rate; only 1.4% of weights train, from zero")),
           why="the lab's LoRA: rank 32 on attention q and v"),
    Method("lora_all", "LoRA, all linear layers", {**LAB_LORA, "target_modules": ALL_LINEAR}, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(1e-3, 3, 32, why="more adapted layers: half lora's rate"),
        H(5e-4, 3, 32, why="more adapted layers than the lab's LoRA: half its rate")),
           why="LoRA on every linear layer of the blocks (q k v o wi_0 wi_1 wo)"),
    Method("dora", "DoRA (r=32, q v)", {**LAB_LORA, "use_dora": True}, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(2e-3, 3, 32, why="as lora"), H(1e-3, 3, 32, why="as lora")),
           why="LoRA with weight decomposition (magnitude + direction); no mixed-batch serving"),
    Method("ia3", "IA³", {**TASK, "peft_type": "IA3", "target_modules": ["k", "v", "wo"],
                          "feedforward_modules": ["wo"]}, per_preset(
        H(3e-2, 10, 16, 0.05, "IA³ scales activations from 1: few parameters, a high rate"),
        H(5e-3, 3, 32, why="IA³ paper's order of magnitude"), H(3e-3, 3, 32, why="the IA³ paper's 3e-3")),
           why="learned scaling vectors on k, v and the feed-forward output: the fewest parameters"),
    Method("prompt_tuning", "Prompt tuning (20 tokens)", {**TASK, "peft_type": "PROMPT_TUNING",
                                                          "num_virtual_tokens": 20}, per_preset(
        H(3e-1, 10, 16, 0.05, "soft prompts need the large rate of Lester et al. (0.3)"),
        H(3e-1, 3, 32, why="Lester et al.'s 0.3"), H(3e-1, 3, 32, why="Lester et al.'s 0.3")),
           why="20 trainable virtual tokens before the input; the model is untouched"),
    Method("prefix_tuning", "Prefix tuning (20 tokens)", {**TASK, "peft_type": "PREFIX_TUNING",
                                                          "num_virtual_tokens": 20}, per_preset(
        H(3e-2, 10, 16, 0.05, "prefixes in every layer: a high rate on tiny"),
        H(1e-2, 3, 32, why="peft's seq2seq prefix-tuning example"), H(1e-2, 3, 32, why="peft's example rate")),
           why="trainable key/value prefixes in every attention layer"),
    Method("qlora", "QLoRA (4-bit base, r=32, q v)", LAB_LORA, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(2e-3, 3, 32, why="as lora"), H(1e-3, 3, 32, why="as lora")),
           needs_cuda=True, quantize_4bit=True,
           why="the lab's LoRA on a base held in 4 bits (nf4, bf16 compute): the least training memory"),
]}


# What some peft types need from the training loop, or cannot get from this recipe: one table for the built-ins
# and for a person's own configs. AdaLoRA's rank budget is applied by a Trainer callback (training/trainer.py:
# AdaLoraBudget) with total_step derived from the run; these cannot be trained here at all:
CANNOT_TRAIN = {
    "POLY": "it routes each example by a task id (task_ids), which single-task summarization data does not have",
    "MULTITASK_PROMPT_TUNING": "it needs a task id per example (task_ids), which this data does not have",
    "ADAPTION_PROMPT": "it adapts decoder-only (LLaMA-style) attention and does not wrap T5",
    "CPT": "it is built for causal language models and does not wrap T5's encoder-decoder",
    "XLORA": "it mixes already-trained LoRA adapters; train those LoRAs as methods instead",
    "SHADOW": "it does not wrap T5 for training and generate in peft 0.21",
}


def peft_type_of(doc: dict, source: str) -> str:
    from peft import PeftType

    value = doc.get("peft_type")
    if value not in PeftType.__members__:
        raise ConfigError(f"{source}: 'peft_type' is {value!r}; it must be one of peft's types "
                          f"({', '.join(PeftType.__members__)}), as in the adapter_config.json peft saves.")
    return value


def user_method(spec: str) -> Method:
    """`NAME=PATH` (or just PATH: the name is the file's folder or stem) to an adapter_config.json."""
    name, _, path = spec.rpartition("=")
    path = Path(path)
    if path.is_dir():
        path = path / "adapter_config.json"
    name = name or (path.parent.name if path.name == "adapter_config.json" else path.stem)
    if not name.replace("_", "").replace("-", "").isalnum() or name in RESERVED_FOLDERS:
        raise ConfigError(f"--method_config {spec!r}: the method name {name!r} must be letters, digits, _ or - "
                          f"and not one of {', '.join(sorted(RESERVED_FOLDERS))} (it becomes a folder of the run).")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--method_config {spec!r}: {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--method_config {spec!r}: {path} is not valid JSON ({e}).") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--method_config {spec!r}: {path} must hold a JSON object.")
    peft_type = peft_type_of(doc, str(path))
    if peft_type in CANNOT_TRAIN:
        raise ConfigError(f"--method_config {spec!r}: {peft_type} cannot be trained by this recipe: "
                          f"{CANNOT_TRAIN[peft_type]}.")
    doc = {k: v for k, v in doc.items() if k not in ("base_model_name_or_path", "revision", "peft_version",
                                                      "inference_mode", "auto_mapping")}
    doc["task_type"] = "SEQ_2_SEQ_LM"
    template = next((m for m in BUILTIN.values() if (m.peft or {}).get("peft_type") == peft_type
                     and not m.needs_cuda), BUILTIN["lora"])
    method = Method(name, f"{name} (user)", doc, template.hyper,
                    why=f"user-defined from {path}; optimisation defaults of {template.name}")
    try:
        method.peft_config()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--method_config {spec!r}: peft rejects {path}: {e}") from None
    return method


def resolve_methods(names: str, user_specs: list[str] = (), cuda: Optional[bool] = None) -> list[Method]:
    """The methods to train, in order. `all` = every built-in usable here (QLoRA needs CUDA: skipped on CPU with
    a printed reason) plus user-defined ones; an explicit name that cannot run here is refused at once."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    user = [user_method(s) for s in user_specs]
    user_names = [m.name for m in user]
    for m in user:
        if m.name in BUILTIN:
            raise ConfigError(f"--method_config {m.name}=...: '{m.name}' is a built-in method; a config of yours "
                              f"needs a name of its own (e.g. {m.name}_mine), so the page never labels it as the "
                              "built-in.")
        if user_names.count(m.name) > 1:
            raise ConfigError(f"--method_config: the name '{m.name}' is given {user_names.count(m.name)} times; each "
                              "of your methods needs its own name (NAME=PATH).")
    known = {**BUILTIN, **{m.name: m for m in user}}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if wanted == ["all"]:
        chosen = list(BUILTIN.values()) + user
        skipped = [m for m in chosen if m.needs_cuda and not cuda]
        for m in skipped:
            print(f"--methods all: skipping {m.name}: it needs a CUDA GPU (none here).")
        return [m for m in chosen if m not in skipped]
    if not wanted and not user:
        raise ConfigError("--methods is empty: give a comma list such as full,lora or 'all'.")
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown)}. Built in: {', '.join(BUILTIN)}; "
                          "add your own with --method_config NAME=PATH/adapter_config.json.")
    chosen = [known[n] for n in dict.fromkeys(wanted)]
    for m in chosen:
        if m.needs_cuda and not cuda:
            raise ConfigError(f"--methods {m.name}: {m.label} needs a CUDA GPU (bitsandbytes 4-bit base); none is "
                              "available here. Drop it, or use --methods all, which skips it on CPU.")
    return chosen + [m for m in user if m.name not in wanted]
