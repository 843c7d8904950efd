"""Loading a run's three models for serving: the base weights ONCE, carrying the LoRA adapter (switched off for
base outputs), plus the full fine-tune. A model that fails to load is marked unavailable with the reason."""

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from artifacts.contract import (FULL_MODEL, LORA_ADAPTER, RUN_JSON, base_model_location, read_run_file,
                                tokenizer_location)

ADAPTER = "default"  # peft's name for the adapter loaded first


@dataclass
class ServedModels:
    tokenizer: object
    shared: Optional[object]          # PeftModel over the base (or the bare base if the adapter failed)
    full: Optional[object]
    device: str
    dtype: torch.dtype
    errors: dict = field(default_factory=dict)   # model -> why it is unavailable
    lock: threading.Lock = field(default_factory=threading.Lock)  # adapter hooks are model state: one call at a time

    def available(self, model: str) -> bool:
        return model not in self.errors

    def describe(self) -> str:
        return f"{self.device} ({str(self.dtype).replace('torch.', '')})"


def pick_device() -> tuple[str, torch.dtype]:
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return "cpu", torch.float32


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def load_models(run_dir: Path, device: Optional[str] = None) -> ServedModels:
    from peft import PeftModel

    run_dir = Path(run_dir)
    run = read_run_file(run_dir, RUN_JSON)
    device, dtype = (device, torch.float32) if device else pick_device()
    base_path = base_model_location(run_dir, run)
    errors, shared, full, tokenizer = {}, None, None, None
    for source in (tokenizer_location(run_dir, run), run_dir / FULL_MODEL):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            break
        except (OSError, ValueError) as e:
            errors["tokenizer"] = _reason(e)
    if tokenizer is None:
        raise OSError(f"no tokenizer could be loaded for {run_dir}: {errors['tokenizer']}")
    errors.pop("tokenizer", None)
    try:
        shared = AutoModelForSeq2SeqLM.from_pretrained(base_path, dtype=dtype)
    except Exception as e:  # any load failure: missing files, corrupt safetensors, bad config
        errors["base"] = errors["lora"] = f"base model {base_path}: {_reason(e)}"
    if shared is not None:
        try:
            shared = PeftModel.from_pretrained(shared, str(run_dir / LORA_ADAPTER), adapter_name=ADAPTER)
        except Exception as e:
            errors["lora"] = f"adapter {run_dir / LORA_ADAPTER}: {_reason(e)}"
            # peft injects adapter layers into the base before reading the weights: start from clean weights
            shared = AutoModelForSeq2SeqLM.from_pretrained(base_path, dtype=dtype)
        shared = shared.to(device).eval()
    try:
        full = AutoModelForSeq2SeqLM.from_pretrained(str(run_dir / FULL_MODEL), dtype=dtype).to(device).eval()
    except Exception as e:
        errors["full"] = f"full model {run_dir / FULL_MODEL}: {_reason(e)}"
    return ServedModels(tokenizer=tokenizer, shared=shared, full=full, device=device, dtype=dtype, errors=errors)
