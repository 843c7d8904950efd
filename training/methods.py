"""The fine-tuning methods a run can compare: one registry, each method a small spec (data, not code branches).

A method is `full` (every weight trains) or a peft method whose config is written exactly as the
`adapter_config.json` peft saves; its default optimisation settings are given per preset with a one-line reason.
User-defined methods come from such a file: `--method_config NAME=PATH/adapter_config.json`.

    python -m training --preset tiny --methods full,lora,ia3     # any comma list, or `all`
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from contract.protocol import RESERVED_FOLDERS
from training.config import PRESETS, ConfigError, Hyper

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


def H(lr, epochs, batch, warmup=0.03, why=""):
    return Hyper(lr, epochs, batch, warmup, why)


# tiny full and LoRA: the rates their sweeps chose (README, "Tuned vs untuned"), and the fewest epochs that keep
# the demo's ROUGE (full 250 steps at 1e-3: 0.448 [0.390, 0.502] vs 0.455 at 400 steps of 3e-3; LoRA 300 steps at
# 3.3e-3: 0.433 [0.375, 0.489] vs 0.413 at 500 steps of 1e-2; 80 test dialogues): the app's first start builds both
TINY_FULL = H(1e-3, 5, 16, 0.05, "a 0.9M-parameter T5 from copy pre-training: its swept rate, 5 epochs")

BUILTIN: dict[str, Method] = {m.name: m for m in [
    Method("full", "Full fine-tune", None, per_preset(
        TINY_FULL, H(3e-4, 3, 32, why="small models tolerate and need a larger rate"),
        H(5e-5, 3, 32, why="AdamW 5e-5 is the stable rate for all-weights T5-base; batch 32 because a GPU step is "
                           "launch-bound at this size (benchmarks P5)")),
           why="every weight trains: the quality ceiling, and the most memory and disk"),
    Method("lora", "LoRA (lab: r=32, q v)", LAB_LORA, per_preset(
        H(3.3e-3, 6, 16, 0.05, "fresh low-rank matrices start at zero: its swept rate, 6 epochs"),
        H(2e-3, 3, 32, why="twice the base preset's rate for the smaller model"),
        H(1e-3, 3, 32, why="the lab's rate; only 1.4% of weights train, from zero")),
           why="the lab's LoRA: rank 32 on attention q and v", paper="https://arxiv.org/abs/2106.09685"),
    Method("lora_all", "LoRA, all linear layers", {**LAB_LORA, "target_modules": ALL_LINEAR}, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(1e-3, 3, 32, why="more adapted layers: half lora's rate"),
        H(5e-4, 3, 32, why="more adapted layers than the lab's LoRA: half its rate")),
           why="LoRA on every linear layer of the blocks (q k v o wi_0 wi_1 wo)", paper="https://arxiv.org/abs/2106.09685"),
    Method("dora", "DoRA (r=32, q v)", {**LAB_LORA, "use_dora": True}, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(2e-3, 3, 32, why="as lora"), H(1e-3, 3, 32, why="as lora")),
           why="LoRA with weight decomposition (magnitude + direction); no mixed-batch serving",
           paper="https://arxiv.org/abs/2402.09353"),
    Method("ia3", "IA³", {**TASK, "peft_type": "IA3", "target_modules": ["k", "v", "wo"],
                          "feedforward_modules": ["wo"]}, per_preset(
        H(3e-2, 10, 16, 0.05, "IA³ scales activations from 1: few parameters, a high rate"),
        H(5e-3, 3, 32, why="IA³ paper's order of magnitude"), H(3e-3, 3, 32, why="the IA³ paper's 3e-3")),
           why="learned scaling vectors on k, v and the feed-forward output: the fewest parameters",
           paper="https://arxiv.org/abs/2205.05638"),
    Method("prompt_tuning", "Prompt tuning (20 tokens)", {**TASK, "peft_type": "PROMPT_TUNING",
                                                          "num_virtual_tokens": 20}, per_preset(
        H(3e-1, 10, 16, 0.05, "soft prompts need the large rate of Lester et al. (0.3)"),
        H(3e-1, 3, 32, why="Lester et al.'s 0.3"), H(3e-1, 3, 32, why="Lester et al.'s 0.3")),
           why="20 trainable virtual tokens before the input; the model is untouched",
           paper="https://arxiv.org/abs/2104.08691"),
    Method("prefix_tuning", "Prefix tuning (20 tokens)", {**TASK, "peft_type": "PREFIX_TUNING",
                                                          "num_virtual_tokens": 20}, per_preset(
        H(3e-2, 10, 16, 0.05, "prefixes in every layer: a high rate on tiny"),
        H(1e-2, 3, 32, why="peft's seq2seq prefix-tuning example"), H(1e-2, 3, 32, why="peft's example rate")),
           why="trainable key/value prefixes in every attention layer", paper="https://arxiv.org/abs/2101.00190"),
    Method("qlora", "QLoRA (4-bit base, r=32, q v)", LAB_LORA, per_preset(
        H(1e-2, 10, 16, 0.05, "as lora"), H(2e-3, 3, 32, why="as lora"), H(1e-3, 3, 32, why="as lora")),
           needs_cuda=True, quantize_4bit=True,
           why="the lab's LoRA on a base held in 4 bits (nf4, bf16 compute): the least training memory",
           paper="https://arxiv.org/abs/2305.14314"),
]}
CORE = tuple(BUILTIN)  # `--methods all`: the methods people run by default, each measured in the README


# The rest of the catalogue: every other peft method family that trains and generates with T5. Configs follow
# the paper or peft's defaults, sized (rank, frequencies, blocks) so the trainable count is of LoRA's order where
# the method allows. Learning rates: PEFT's method_comparison (MetaMathQA on Llama-3.2-3B, AdamW; the rate of the
# method's experiment, else its default 1e-4), moved to this project's scale by one rule: x10 for flan-t5-base
# (the lab's LoRA rate, 1e-3, is 10x method_comparison's LoRA rate), x2 again for flan-t5-small, x10 again for
# tiny (as lora: 1e-2), never above 0.3 (prompt tuning's). The sweep of training --sweep is what makes them fair.
MC = "peft method_comparison (MetaMathQA, Llama-3.2-3B)"


def transferred(mc_rate: float, experiment: str) -> dict[str, Hyper]:
    base = min(10 * mc_rate, 0.3)
    return per_preset(H(min(10 * base, 0.3), 10, 16, 0.05, f"x10 the flan-t5-base rate, as lora ({MC}: {mc_rate:g})"),
                      H(min(2 * base, 0.3), 3, 32, why=f"x2 the flan-t5-base rate, as lora ({MC}: {mc_rate:g})"),
                      H(base, 3, 32, why=f"x10 {MC}'s {mc_rate:g} ({experiment}), as the lab's LoRA to its"))


def catalogue_method(name, label, peft: dict, mc_rate, experiment, why, paper) -> Method:
    return Method(name, label, {**TASK, **peft}, transferred(mc_rate, experiment), why=why, paper=paper)


QV = ["q", "v"]  # the lab's LoRA targets: the catalogue adapts the same layers, so the methods compare
ARXIV = "https://arxiv.org/abs/"
CATALOGUE = [
    catalogue_method("loha", "LoHa (r=16, q v)", {"peft_type": "LOHA", "r": 16, "alpha": 16, "target_modules": QV},
                     1e-4, "default", "low-rank Hadamard product of two LoRA pairs (as many parameters as LoRA r=32)",
                     ARXIV + "2108.06098"),
    catalogue_method("lokr", "LoKr (r=16, q v)", {"peft_type": "LOKR", "r": 16, "alpha": 16, "target_modules": QV},
                     3e-3, "lokr rank32-factor4", "Kronecker product of a small and a low-rank matrix",
                     ARXIV + "2309.14859"),
    catalogue_method("adalora", "AdaLoRA (r 12 to 8, q v)", {"peft_type": "ADALORA", "init_r": 12, "target_r": 8,
                                                             "lora_alpha": 32, "target_modules": QV},
                     1e-4, "default", "SVD-shaped LoRA whose ranks are pruned to a budget by importance during "
                     "training", ARXIV + "2303.10512"),
    catalogue_method("vera", "VeRA (r=256, q v)", {"peft_type": "VERA", "r": 256, "target_modules": QV},
                     1e-3, "vera default", "scaling vectors on frozen random low-rank matrices shared by all layers",
                     ARXIV + "2310.11454"),
    catalogue_method("oft", "OFT (blocks of 32, q v)", {"peft_type": "OFT", "r": 0, "oft_block_size": 32,
                                                        "target_modules": QV},
                     1e-4, "default", "an orthogonal (block-diagonal) rotation of each weight", ARXIV + "2306.07280"),
    catalogue_method("boft", "BOFT (butterfly, q v)", {"peft_type": "BOFT", "boft_block_size": 4,
                                                       "boft_n_butterfly_factor": 2, "target_modules": QV},
                     1e-4, "default", "an orthogonal rotation factored as a butterfly of small blocks",
                     ARXIV + "2311.06243"),
    catalogue_method("fourierft", "FourierFT (1000 frequencies, q v)", {"peft_type": "FOURIERFT", "n_frequency": 1000,
                                                                        "scaling": 150.0, "target_modules": QV},
                     1e-4, "default", "a few learned spectral coefficients of each weight update",
                     ARXIV + "2405.03003"),
    catalogue_method("ln_tuning", "LayerNorm tuning", {"peft_type": "LN_TUNING",
                                                       "target_modules": ["layer_norm", "final_layer_norm"]},
                     1e-4, "default", "only the layer-norm weights", ARXIV + "2312.11420"),
    catalogue_method("hra", "HRA (r=8, q v)", {"peft_type": "HRA", "r": 8, "target_modules": QV},
                     1e-4, "default", "a chain of Householder reflections of each weight", ARXIV + "2405.17484"),
    catalogue_method("miss", "MiSS (r=64, q v)", {"peft_type": "MISS", "r": 64, "target_modules": QV},
                     1e-4, "default", "one shared small matrix expanded across each weight's shards",
                     ARXIV + "2409.15371"),
    catalogue_method("road", "RoAd (q v)", {"peft_type": "ROAD", "variant": "road_1", "target_modules": QV},
                     1e-3, "road lr 1e-3", "2-D rotations and scales of each output pair; serves in a mixed batch",
                     ARXIV + "2409.00119"),
    catalogue_method("glora", "GLoRA (r=4, q v)", {"peft_type": "GLORA", "r": 4, "target_modules": QV},
                     5e-4, "glora vector-paths", "generalized LoRA: low-rank scale, shift and bias paths; serves in "
                     "a mixed batch", ARXIV + "2306.07967"),
    catalogue_method("randlora", "RandLoRA (r=32, q v)", {"peft_type": "RANDLORA", "r": 32, "target_modules": QV},
                     1e-4, "default", "full-rank updates from frozen random bases with learned diagonal scales",
                     ARXIV + "2502.00987"),
    catalogue_method("c3a", "C3A (blocks of 64, q v)", {"peft_type": "C3A", "block_size": 64, "target_modules": QV},
                     0.3, "c3a default", "circular convolution kernels "
                     "per block of each weight", ARXIV + "2407.19342"),
    catalogue_method("p_tuning", "P-tuning (20 tokens)", {"peft_type": "P_TUNING", "num_virtual_tokens": 20,
                                                          "encoder_hidden_size": 128},
                     1e-4, "ptuning default", "20 virtual tokens produced by a small trained MLP encoder",
                     ARXIV + "2103.10385"),
    catalogue_method("vblora", "VB-LoRA (q v)", {"peft_type": "VBLORA", "r": 4, "num_vectors": 64,
                                                 "vector_length": 64, "target_modules": QV},
                     5e-4, "vblora bank1024", "LoRA factors assembled from a small shared vector bank",
                     ARXIV + "2405.15179"),
    catalogue_method("shira", "SHiRA (q v)", {"peft_type": "SHIRA", "r": 32, "target_modules": QV},
                     3e-4, "shira lr 3e-4", "a sparse high-rank update: a fixed mask of weights trains",
                     ARXIV + "2406.13175"),
    catalogue_method("waveft", "WaveFT (q v)", {"peft_type": "WAVEFT", "n_frequency": 1000, "target_modules": QV},
                     1e-4, "waveft default", "a few learned wavelet coefficients of each weight update",
                     ARXIV + "2505.12532"),
    catalogue_method("delora", "DeLoRA (r=16, q v)", {"peft_type": "DELORA", "r": 16, "target_modules": QV},
                     1e-3, "delora rank32", "LoRA with a bounded, normalized update", ARXIV + "2503.18225"),
    catalogue_method("gralora", "GraLoRA (r=32, q v)", {"peft_type": "GRALORA", "r": 32, "target_modules": QV},
                     2e-4, "gralora rank32", "LoRA split into a grid of independent small blocks",
                     ARXIV + "2505.20355"),
    catalogue_method("hira", "HiRA (r=32, q v)", {"peft_type": "HIRA", "r": 32, "target_modules": QV},
                     4.5e-3, "hira rank32", "a Hadamard product of the weight with a low-rank update (high rank)",
                     "https://openreview.net/pdf?id=TwJrTz9cRS"),
    catalogue_method("pvera", "PVeRA (r=256, q v)", {"peft_type": "PVERA", "r": 256, "target_modules": QV},
                     3e-3, "pvera default", "VeRA with probabilistic scaling vectors", ARXIV + "2512.07703"),
    catalogue_method("lily", "Lily (r=16, q v)", {"peft_type": "LILY", "r": 16, "target_modules": QV},
                     1e-4, "default", "low-rank projectors shared across layers, chosen by a router",
                     ARXIV + "2407.09946"),
    catalogue_method("unilora", "Uni-LoRA (q v)", {"peft_type": "UNILORA", "r": 16, "target_modules": QV},
                     1e-4, "default", "every LoRA factor projected from one small trained vector",
                     ARXIV + "2506.00799"),
    catalogue_method("osf", "OSF (q v)", {"peft_type": "OSF", "target_modules": QV},
                     5e-5, "osf rank128", "updates kept orthogonal to each weight's dominant singular directions",
                     ARXIV + "2504.07097"),
]
BUILTIN.update({m.name: m for m in CATALOGUE})
# Left out of the catalogue, each with its reason (CANNOT_TRAIN above: the types that cannot train here at all).
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


def check_keys(doc: dict, peft_type: str, spec: str) -> None:
    """peft drops a key it does not know with only a warning, and the run would record it as if it had been used:
    refuse it, listing the keys this peft type takes."""
    import dataclasses

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    known = {f.name for f in dataclasses.fields(PEFT_TYPE_TO_CONFIG_MAPPING[peft_type])}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"--method_config {spec[:120]!r}: {peft_type} has no field {', '.join(map(repr, unknown))} "
                          f"(a typo?); its fields are {', '.join(sorted(known))}.")


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
    check_keys(doc, peft_type, spec)
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
