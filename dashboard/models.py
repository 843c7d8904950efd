"""The run's models for serving, loaded as the evaluation loads them (artifacts/loading.py): the base weights
ONCE, every adapter on them, full fine-tunes on their own. A model that fails to load is marked unavailable with
the reason while the others serve."""

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from artifacts.loading import LoadedRun, load_run_models

BASE_LABEL = "Base (no fine-tuning)"


@dataclass
class ServedModels:
    loaded: LoadedRun
    # peft's adapter_names hooks and set_adapter are model state: one model call at a time
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def models(self) -> list[str]:
        return self.loaded.models

    @property
    def errors(self) -> dict:
        return self.loaded.errors

    @property
    def device(self) -> str:
        return self.loaded.device

    def label(self, name: str) -> str:
        return BASE_LABEL if name == "base" else self.loaded.labels.get(name, name)

    def available(self, model: str) -> bool:
        return self.loaded.available(model)

    def describe(self) -> str:
        return f"{self.loaded.device} ({str(self.loaded.dtype).replace('torch.', '')})"


def load_models(run_dir: Path, device: Optional[str] = None) -> ServedModels:
    return ServedModels(load_run_models(Path(run_dir), device))
