"""The run's models for serving, loaded as the evaluation loads them (artifacts/loading.py): the base weights
ONCE, every adapter on them, full fine-tunes on their own. A model that fails to load is marked unavailable with
the reason while the others serve."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from artifacts.loading import LoadedRun, load_run_models
from dashboard.batcher import Batcher

BASE_LABEL = "Base (no fine-tuning)"


@dataclass
class ServedModels:
    loaded: LoadedRun
    batcher: Batcher  # the one worker that calls the models (peft's adapter hooks are model state)

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


def load_models(run_dir: Path, device: Optional[str] = None, max_rows: int = 48, max_wait: float = 0.05) -> ServedModels:
    """max_rows: rows in one generate call; max_wait: seconds a request waits for others to share its calls."""
    loaded = load_run_models(Path(run_dir), device)
    return ServedModels(loaded, Batcher(loaded, max_rows=max_rows, max_wait=max_wait))
