"""The run's models as a service: loaded as the evaluation loads them (contract/loading.py: the base weights
ONCE, every adapter on them, full fine-tunes on their own), called only by their one worker (dashboard/batcher.py),
which serves requests arriving together in shared batched calls. A model that fails to load is unavailable, with
the reason, while the others serve.
"""

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from contract.loading import LoadedRun, load_run_models
from contract.protocol import BASE, DEFAULT_PROMPT, MAX_SOURCE_TOKENS
from dashboard.batcher import MAX_ROWS, MAX_WAIT_SECONDS, Batcher, SerialTokenizer, Summary
from dashboard.inputs import HEAD_CHARS, Settings, check_text, chosen_models
from dashboard.run_data import RunData, load_run

DEFAULT_MODELS = (BASE, "full", "lora")  # what the page compares unless a person picks others


@dataclass
class Request:
    """One queued request: the chosen models in the run's order, whether the text was truncated, the worker's
    future and the models that could not be called (with their reasons)."""
    models: list[str]
    truncated: bool
    future: Future
    unavailable: dict

    def result(self) -> dict[str, Summary]:
        """{model: Summary} in the request's order, once the worker is done."""
        done = {**self.future.result(), **self.unavailable}
        return {m: done[m] for m in self.models}


class Models:
    def __init__(self, loaded: LoadedRun, max_rows: int = MAX_ROWS, max_wait: float = MAX_WAIT_SECONDS, backend=None):
        """max_rows: rows in one generate call; max_wait: seconds a request waits for others to share its calls;
        backend: where calls run (default: this machine's exact backend, dashboard/backends.py)."""
        self.loaded = loaded
        self.tokenizer = SerialTokenizer(loaded.tokenizer)
        self.batcher = Batcher(loaded, self.tokenizer, max_rows=max_rows, max_wait=max_wait, backend=backend)

    def close(self) -> None:
        self.batcher.stop()

    def describe(self) -> str:
        exact = f"{self.loaded.device} ({str(self.loaded.dtype).replace('torch.', '')})"
        translators = getattr(self.batcher.backend, "translators", None)
        if translators is None:
            return exact
        return f"{exact}; int8 (CTranslate2) for {len(translators)} of {len(self.loaded.models)} models"

    def check_models(self, models) -> list[str]:
        """The chosen models in the run's order (default base, full, lora: those the run has)."""
        names = self.loaded.models
        return chosen_models(models, names, [m for m in DEFAULT_MODELS if m in names], "this run")

    def prompt_for(self, text: str, prompt_template: str = DEFAULT_PROMPT) -> tuple[str, bool]:
        """(the prompt the models read, truncated?). Only the text's head is tokenized: the rest is never read."""
        text = check_text(text)
        prompt = prompt_template.format(dialogue=text[:HEAD_CHARS])
        return prompt, len(text) > HEAD_CHARS or self.tokenizer.count(prompt) > MAX_SOURCE_TOKENS

    def submit(self, text: str, settings: Settings = Settings(), prompt_template: str = DEFAULT_PROMPT,
               models=None, on_tokens: Optional[Callable[[str, list], None]] = None) -> Request:
        """Validate, then queue one request for the worker; `on_tokens(model, ids so far)` streams."""
        prompt, truncated = self.prompt_for(text, prompt_template)
        models = self.check_models(models)
        errors = self.loaded.errors
        unavailable = {m: Summary(m, error=errors[m]) for m in models if m in errors}
        ready = [m for m in models if m not in errors]
        return Request(models, truncated, self.batcher.submit(prompt, settings, ready, on_tokens), unavailable)


BACKENDS = ("exact", "int8")  # --backend: PyTorch as trained / merged models in int8 through CTranslate2 (CPU)


def load_models(
    run_dir: Path,
    device: Optional[str] = None,
    max_rows: int = MAX_ROWS,
    max_wait: float = MAX_WAIT_SECONDS,
    shared_bases: Optional[dict] = None,
    backend: str = "exact",
    data: Optional[RunData] = None,
) -> Models:
    """`shared_bases`: one dict passed for several runs lets runs on the same base hold it once; `backend`: one
    of BACKENDS (int8 converts each mergeable model once, cached in the run); `data`: the run as the app read it
    (dashboard/run_data.py), so its files are not read again."""
    data = data or load_run(Path(run_dir))
    loaded = load_run_models(Path(run_dir), device, shared_bases, data.run, data.train)
    chosen = None
    if backend == "int8":
        from dashboard.int8_backend import int8_backend

        chosen = int8_backend(loaded, loaded.tokenizer, Path(run_dir), mergeable(data, loaded.methods))
    return Models(loaded, max_rows=max_rows, max_wait=max_wait, backend=chosen)


def mergeable(data: RunData, methods: list[str]) -> dict[str, bool]:
    """Whether peft can merge each method into the base (its metrics.json says; unreadable = no)."""
    return {name: bool(data.train.get(name, {}).get("method", {}).get("merges")) for name in methods}
