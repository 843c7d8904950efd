"""The fine-tuning methods a run can compare: one registry, each method a small spec (data, not code branches).

A method is `full` (every weight trains) or a peft method whose config is written exactly as the
`adapter_config.json` peft saves; its default optimisation settings are given per preset with a one-line reason.
User-defined methods come from such a file: `--method_config NAME=PATH/adapter_config.json`.

    python -m training --preset tiny --methods full,lora,ia3     # any comma list, or `all`
"""

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from contract.protocol import RESERVED_FOLDERS
from training.config import PRESETS, ConfigError, Hyper

METHOD_CONFIGS = Path(__file__).parent / "method_configs"  # one folder per built-in method (its README says how)

@dataclass(frozen=True)
class Method:
    name: str                     # folder name in the run and the key everywhere (evaluation, dashboard, API)
    label: str                    # what people read in the page and charts
    peft: Optional[dict]          # adapter_config.json fields; None = full fine-tuning
    hyper: dict[str, Hyper]       # per preset: learning rate, epochs, batch, warm-up, and why
    needs_cuda: bool = False
    quantize_4bit: bool = False   # base loaded 4-bit (bitsandbytes nf4, bf16 compute): QLoRA
    why: str = ""                 # what trains, in one line
    paper: str = ""

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
            doc.setdefault("tfinal", doc["total_step"] // 10)  # the budget is final for the last 10% of steps
        config = PeftConfigMixin.from_peft_type(**doc)
        if config.peft_type == "PREFIX_TUNING" and config.token_dim is None and hasattr(model_config, "d_kv"):
            config.token_dim = model_config.num_heads * model_config.d_kv
        return config

    def settings(self, preset: str) -> Hyper:
        """Its settings for `preset` (a preset may borrow another's, with its own number of epochs)."""
        p = PRESETS.get(preset)
        h = self.hyper.get((p and p.settings_of) or preset) or self.hyper["flan-t5-base"]
        return dataclasses.replace(h, num_train_epochs=p.epochs) if p and p.epochs else h

    def describe(self) -> dict:
        """What metrics.json records about the method (the dashboard reads labels from here)."""
        return {"name": self.name, "label": self.label, "peft_type": (self.peft or {}).get("peft_type", "FULL"),
                "base_quantization": "nf4" if self.quantize_4bit else None, "what_trains": self.why,
                "paper": self.paper}


# Left out of the catalogue, each with its reason (CANNOT_TRAIN, below: the types that cannot train here at all).
LEFT_OUT = {
    "TRAINABLE_TOKENS": "retrains chosen token embeddings: a list of token ids per tokenizer, not a way to adapt "
                        "a model to summarization",
    "ADAMSS": "needs scikit-learn, which nothing else here uses",
    "BEFT, FROD, TINYLORA, PSOFT, PEANUT, CARTRIDGE, SUPERTUNING, DEFT": "new in peft 0.21 and not yet in its "
        "method_comparison, so no rate to start from; they train on T5 (checked) and run as your own config",
}


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


MAX_NAME = 100  # a method name is a folder, a label and an API key: long names break paths and the page


def check_keys(doc: dict, peft_type: str, where: str) -> None:
    """peft drops a key it does not know with only a warning, and the run would record it as if it had been used:
    refuse it, listing the keys this peft type takes."""
    import dataclasses

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    known = {f.name for f in dataclasses.fields(PEFT_TYPE_TO_CONFIG_MAPPING[peft_type])}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{where}: {peft_type} has no field {', '.join(map(repr, unknown))} "
                          f"(a typo?); its fields are {', '.join(sorted(known))}.")


def read_adapter_config(path: Path, where: str) -> dict:
    """An adapter_config.json as peft saves it, checked: JSON, a peft type this recipe can train, only the type's own
    fields (peft's bookkeeping fields dropped), for a seq2seq model. Built-in methods and --method_config alike."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: {path} is not valid JSON ({e}).") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: {path} must hold a JSON object.")
    peft_type = peft_type_of(doc, str(path))
    if peft_type in CANNOT_TRAIN:
        raise ConfigError(f"{where}: {peft_type} cannot be trained by this recipe: {CANNOT_TRAIN[peft_type]}.")
    doc = {k: v for k, v in doc.items() if k not in ("base_model_name_or_path", "revision", "peft_version",
                                                      "inference_mode", "auto_mapping")}
    check_keys(doc, peft_type, where)
    check_module_patterns(doc, where)
    return {**doc, "task_type": "SEQ_2_SEQ_LM"}


PATTERN_FIELDS = ("target_modules", "exclude_modules", "feedforward_modules")  # peft matches a string as a regex


def check_module_patterns(doc: dict, where: str) -> None:
    """A module field given as one string is a regular expression to peft (re.fullmatch on every module name):
    compiled here, so a broken one is one line before any model is built."""
    for name in PATTERN_FIELDS:
        pattern = doc.get(name)
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"{where}: {name} {pattern[:80]!r} is not a valid regular expression ({e}); "
                                  "give a list of module names, or a regex that compiles.") from None


def builtin_method(folder: Path) -> Method:
    """A built-in method from its folder: peft's adapter_config.json (none: full fine-tuning) and training.json
    (label, what trains, paper, and per preset the rate, epochs, batch, warm-up and why)."""
    settings = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    config = folder / "adapter_config.json"
    peft = read_adapter_config(config, f"built-in method {folder.name}") if config.exists() else None
    hyper = {preset: Hyper(**h) for preset, h in settings["settings"].items()}
    return Method(folder.name, settings["label"], peft, hyper, needs_cuda=settings.get("needs_cuda", False),
                  quantize_4bit=settings.get("quantize_4bit", False), why=settings["what_trains"],
                  paper=settings["paper"])


def load_builtins() -> tuple[dict, tuple, list]:
    """(every built-in by name, the core names `--methods all` trains, the catalogue's methods), in index.json's
    order: the core set first, then the rest of the peft catalogue."""
    index = json.loads((METHOD_CONFIGS / "index.json").read_text())
    builtin = {name: builtin_method(METHOD_CONFIGS / name) for name in [*index["core"], *index["catalogue"]]}
    return builtin, tuple(index["core"]), [builtin[n] for n in index["catalogue"]]


def user_method(spec: str) -> Method:
    """`NAME=PATH` (or just PATH: the name is the file's folder or stem) to an adapter_config.json."""
    name, _, path = spec.rpartition("=")
    path = Path(path)
    if path.is_dir():
        path = path / "adapter_config.json"
    name = name or (path.parent.name if path.name == "adapter_config.json" else path.stem)
    if not (name.replace("_", "").replace("-", "").isascii() and name.replace("_", "").replace("-", "").isalnum()) \
            or name.lower() in RESERVED_FOLDERS or len(name) > MAX_NAME:
        raise ConfigError(
            f"--method_config {spec[:120]!r}: the method name {name[:120]!r} must be 1 to {MAX_NAME} "
            f"letters, digits, _ or - and not one of {', '.join(sorted(RESERVED_FOLDERS))} (it becomes a "
            "folder of the run)."
        )
    doc = read_adapter_config(path, f"--method_config {spec[:120]!r}")
    template = next((m for m in BUILTIN.values() if (m.peft or {}).get("peft_type") == doc["peft_type"]
                     and not m.needs_cuda), BUILTIN["lora"])
    method = Method(name, f"{name} (user)", doc, template.hyper,
                    why=f"user-defined from {path.name}; optimisation defaults of {template.name}")  # no local path
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
        twin = next((b for b in [*BUILTIN, *user_names] if b.lower() == m.name.lower() and b != m.name), None)
        if twin:
            raise ConfigError(f"--method_config {m.name}=...: '{m.name}' differs from '{twin}' only in case; on a "
                              "case-insensitive disk they would share a folder: choose a name of its own.")
        if m.name in BUILTIN:
            raise ConfigError(f"--method_config {m.name}=...: '{m.name}' is a built-in method; a config of yours "
                              f"needs a name of its own (e.g. {m.name}_mine), so the page never labels it as the "
                              "built-in.")
        if user_names.count(m.name) > 1:
            raise ConfigError(f"--method_config: the name '{m.name}' is given {user_names.count(m.name)} times; each "
                              "of your methods needs its own name (NAME=PATH).")
    known = {**BUILTIN, **{m.name: m for m in user}}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    groups = {"all": CORE, "catalogue": tuple(BUILTIN)}
    if len(wanted) == 1 and wanted[0] in groups:
        chosen = [BUILTIN[n] for n in groups[wanted[0]]] + user
        skipped = [m for m in chosen if m.needs_cuda and not cuda]
        for m in skipped:
            print(f"--methods {wanted[0]}: skipping {m.name}: it needs a CUDA GPU (none here).")
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
                              "available here. Drop it, or use --methods all (or catalogue), which skips it on CPU.")
    return chosen + [m for m in user if m.name not in wanted]


BUILTIN, CORE, CATALOGUE = load_builtins()
