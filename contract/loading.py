"""Loading a run's models from its folder, the same way for the evaluation and for serving: evaluate what is served.

The base weights are held ONCE. "base" is that model untouched. Adapters of a type peft serves exactly in a mixed
batch (contract.protocol.MIXED_BATCH_TYPES: LoRA without DoRA, GLoRA, RoAd) are loaded together, one module tree
per type, whose parameters are the base's own tensors, so one `generate` can mix them row by row with peft's
`adapter_names`. Every other adapter (DoRA, IA³, prompt and prefix tuning, ...) gets its own module tree, again on
the base's tensors: peft silently ignores `adapter_names` for those methods, so each is only ever called alone.
Full fine-tunes hold their own weights; a QLoRA adapter gets its own 4-bit base (CUDA only).
A model that fails to load is reported in `errors` while the others serve.
"""

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from contract.files import (
    ADAPTER,
    MODEL,
    RUN_JSON,
    base_model_location,
    digest_file,
    list_methods,
    method_metrics,
    read_run_file,
    tokenizer_location,
    without_paths,
)
from contract.protocol import MIXED_BATCH_TYPES

# peft 0.21.2 reads transformers' deprecated alias `is_gradient_checkpointing` whenever it wraps a model; the
# warning names a library file and says nothing a user of this project can act on (it is not our call to change)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@dataclass
class LoadedRun:
    tokenizer: object
    base: Optional[object]                           # the base model, untouched
    mixed: dict = field(default_factory=dict)        # peft type -> PeftModel with that type's adapters, by method
    own: dict = field(default_factory=dict)          # method -> model called alone (full, DoRA, IA³, prompt, ...)
    methods: list = field(default_factory=list)      # the run's complete methods, in the run's order
    labels: dict = field(default_factory=dict)       # method -> label written at training time
    errors: dict = field(default_factory=dict)       # model -> why it is unavailable
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    base_path: str = ""

    @property
    def models(self) -> list[str]:
        return ["base", *self.methods]

    def available(self, name: str) -> bool:
        return name not in self.errors

    def group_of(self, name: str) -> Optional[str]:
        """The mixed-batch group (peft type) that serves `name`; base rides with the first group (row "__base__")."""
        if name == "base":
            return next(iter(self.mixed), None)
        return next((kind for kind, model in self.mixed.items() if name in model.peft_config), None)

    def in_mixed_batch(self, name: str) -> bool:
        return name != "base" and self.group_of(name) is not None

    def model_for(self, name: str):
        """The module that generates `name` when called alone (mixed adapters: made active first)."""
        if name == "base":
            return self.base
        if self.in_mixed_batch(name):
            model = self.mixed[self.group_of(name)]
            model.set_adapter(name)
            return model
        return self.own[name]


def pick_device() -> tuple[str, torch.dtype]:
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


def reason(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def sharing_copy(model):
    """A second module tree over the SAME parameter tensors (no copy of the weights): adapters injected into it
    leave `model` untouched. Built on the meta device, then the real tensors are assigned."""
    with torch.device("meta"):
        clone = type(model)(model.config)
    clone.load_state_dict(model.state_dict(keep_vars=True), assign=True, strict=True)
    clone.generation_config = model.generation_config
    return clone.eval()


def adapter_config(folder: Path) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def mixed_group(config: dict) -> Optional[str]:
    """The peft type whose mixed batch serves this adapter exactly, or None (it is called alone)."""
    kind = config.get("peft_type")
    return kind if kind in MIXED_BATCH_TYPES and not config.get("use_dora") else None


def nf4_quantization():
    """QLoRA's 4-bit base (nf4, double quantization, bf16 compute): the same for training and for serving."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_qlora(base_path: str, folder: Path):
    from peft import PeftModel

    if not torch.cuda.is_available():
        raise RuntimeError("a QLoRA adapter needs its 4-bit base on a CUDA GPU (bitsandbytes); none is here")
    base = AutoModelForSeq2SeqLM.from_pretrained(base_path, quantization_config=nf4_quantization(),
                                                 device_map={"": 0})
    return PeftModel.from_pretrained(base, str(folder)).eval()


def base_identity(base_path: str) -> str:
    """What makes two runs' bases the same model: the content of a local folder's weight files, else the Hub id."""
    folder = Path(base_path)
    if not folder.is_dir():
        return base_path
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest_file(digest, file)
    return digest.hexdigest()


def load_base(base_path: str, device: str, dtype, shared: Optional[dict] = None):
    """The base model, once per identical base: `shared` (identity -> model) lets several runs of one app hold
    one copy (inference only: nothing writes to it)."""
    key = (base_identity(base_path), device, str(dtype)) if shared is not None else None
    if key in (shared or {}):
        return shared[key]
    model = AutoModelForSeq2SeqLM.from_pretrained(base_path, dtype=dtype).to(device).eval()
    if shared is not None:
        shared[key] = model
    return model


def load_run_models(run_dir: Path, device: Optional[str] = None, shared_bases: Optional[dict] = None,
                    run: Optional[dict] = None, trainings: Optional[dict] = None,
                    only: Optional[list[str]] = None) -> LoadedRun:
    """The run's models; `shared_bases` (a dict kept by the caller) shares identical bases between runs. `run` and
    `trainings` (method -> its metrics.json): what the caller has read of the run already, not read again. `only`:
    these methods alone (with the base), e.g. one evaluation shard's."""
    from peft import PeftModel

    run_dir = Path(run_dir)
    run = run or read_run_file(run_dir, RUN_JSON)
    trainings = trainings or {}
    device, dtype = (device, torch.float32) if device else pick_device()
    base_path = base_model_location(run_dir, run)
    tokenizer = load_tokenizer(run_dir, run)
    loaded = LoadedRun(tokenizer=tokenizer, base=None, device=device, dtype=dtype, base_path=base_path)
    infos = {}
    for name in [m for m in list_methods(run_dir) if only is None or m in only]:
        try:
            infos[name] = (trainings.get(name) or read_run_file(run_dir, method_metrics(name)))["method"]
        except Exception as e:  # a broken metrics.json: the method is listed, unavailable, with the reason
            infos[name], loaded.errors[name] = {}, without_paths(f"{method_metrics(name)}: {reason(e)}", run_dir)
        loaded.methods.append(name)
        loaded.labels[name] = infos[name].get("label", name)
    try:
        loaded.base = load_base(base_path, device, dtype, shared_bases)
    except Exception as e:  # any load failure: missing files, corrupt safetensors, bad config
        loaded.errors["base"] = without_paths(f"base model {base_path}: {reason(e)}", run_dir)
    for name in loaded.methods:
        if name in loaded.errors:
            continue
        folder = run_dir / name
        try:
            if (folder / MODEL).exists() or infos[name].get("base_quantization") or loaded.base is None:
                loaded.own[name] = load_alone(loaded, folder, bool(infos[name].get("base_quantization")))
            elif kind := mixed_group(adapter_config(folder / ADAPTER)):
                if kind not in loaded.mixed:
                    loaded.mixed[kind] = PeftModel.from_pretrained(sharing_copy(loaded.base), str(folder / ADAPTER),
                                                                   adapter_name=name).eval()
                else:
                    loaded.mixed[kind].load_adapter(str(folder / ADAPTER), adapter_name=name)
            else:  # alone on its module tree: peft's default adapter name (a name like "prompt_tuning" clashes
                # with peft's own parameter prefixes)
                loaded.own[name] = load_alone(loaded, folder)
        except Exception as e:
            loaded.errors[name] = without_paths(f"{name} ({folder}): {reason(e)}", run_dir)
            for kind, model in list(loaded.mixed.items()):
                if name in model.peft_config:
                    if len(model.peft_config) == 1:
                        del loaded.mixed[kind]
                    else:
                        model.delete_adapter(name)
    for model in loaded.mixed.values():
        model.to(device)
    return loaded


def load_alone(loaded: LoadedRun, folder: Path, quantized: bool = False):
    """A model saved in `folder` (<method> or one of its seeds/seed-N) on the run's base, called alone: a whole
    checkpoint, a QLoRA adapter on its 4-bit base, or an adapter on a module tree sharing the base's weights."""
    from peft import PeftModel

    if (folder / MODEL).exists():
        return AutoModelForSeq2SeqLM.from_pretrained(str(folder / MODEL), dtype=loaded.dtype).to(loaded.device).eval()
    if quantized:
        return load_qlora(loaded.base_path, folder / ADAPTER)
    if loaded.base is None:
        raise RuntimeError("its base model is unavailable")
    return PeftModel.from_pretrained(sharing_copy(loaded.base), str(folder / ADAPTER)).to(loaded.device).eval()


def load_tokenizer(run_dir: Path, run: dict):
    """The run's tokenizer; a run whose base folder lost it falls back to the full model's copy."""
    errors = []
    for source in (tokenizer_location(run_dir, run), run_dir / "full" / MODEL):
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as e:
            errors.append(reason(e))
    raise OSError(f"no tokenizer could be loaded for {run_dir}: {'; '.join(errors)}")
