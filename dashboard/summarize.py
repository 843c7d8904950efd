"""Summarising one pasted dialogue with any set of the run's models.

Base and every LoRA-family adapter run as ONE mixed batch on the shared weights (peft's adapter_names: one row
per model, "__base__" for base); every other method (full, DoRA, IA³, prompt/prefix tuning) is a call of its own,
because peft silently ignores adapter_names for them. Greedy calls overlap on a small pool; sampling runs them in
turn so that each draws the same numbers as alone. A lock serialises requests: peft's adapter hooks are model
state, so two overlapping requests would otherwise see each other's.
"""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import torch

from dashboard.models import ServedModels

MAX_CHARS = 20_000       # about 5,000 tokens: far past the 512 the model reads, small enough to tokenize instantly
MAX_SOURCE_TOKENS = 512  # FLAN-T5's input length
MAX_SEED = 2**32 - 1
DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
DEFAULT_MODELS = ("base", "full", "lora")

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="summarize")


class InputError(ValueError):
    """Input the models should not be called on; the message is shown to the user."""


def _number(value, name: str, low, high, integer: bool):
    """A finite number in [low, high] (an int where `integer`), from a number or a numeric string; else InputError."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{name} must be a number from {low} to {high} (got {value!r}).")
    try:
        number = float(value) if not integer or isinstance(value, float) else int(str(value).strip())
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number from {low} to {high} (got {str(value)[:40]!r}).") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InputError(f"{name} must be a number from {low} to {high} (got {value!r}).")
    if integer:
        if number != int(number):
            raise InputError(f"{name} must be a whole number (got {value!r}).")
        return int(number)
    return number


def _boolean(value, name: str) -> bool:
    """True/False, or the strings 'true'/'false' (any case); anything else is refused, never guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(f"{name} must be true or false (got {str(value)[:40]!r}).")


@dataclass(frozen=True)
class Settings:
    """Generation controls; the defaults are the evaluation's (greedy, 200 new tokens)."""
    max_new_tokens: int = 200
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def from_inputs(cls, max_new_tokens=200, num_beams=1, do_sample=False, temperature=1.0, top_p=1.0, seed=0):
        """Every control validated, each with a message naming it and its range."""
        return cls(max_new_tokens=_number(max_new_tokens, "max new tokens", 1, 512, True),
                   num_beams=_number(num_beams, "beams", 1, 8, True),
                   do_sample=_boolean(do_sample, "sample"),
                   temperature=_number(temperature, "temperature", 0.05, 2.0, False),
                   top_p=_number(top_p, "top-p", 0.05, 1.0, False),
                   seed=_number(seed, "seed", 0, MAX_SEED, True))

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass
class Summary:
    model: str
    text: str = ""
    seconds: float = 0.0
    tokens: int = 0
    shared_call: bool = False   # generated in one batched call with other shared-weight models; seconds is that call's
    error: Optional[str] = None


def check_text(text, name: str = "dialogue", required: bool = True) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"The {name} must be text (got {type(text).__name__}).")
    text = text.strip()
    if required and not text:
        raise InputError("Paste a dialogue first: the text box is empty.")
    if len(text) > MAX_CHARS:
        raise InputError(f"The {name} has {len(text):,} characters; the limit is {MAX_CHARS:,}. The models read only "
                         f"the first {MAX_SOURCE_TOKENS} tokens anyway: paste a shorter text.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"The {name} contains characters that cannot be encoded as UTF-8 (a lone surrogate at "
                         f"position {e.start}); copy the text again from its source.") from None
    return text


def check_models(served: ServedModels, models) -> list[str]:
    models = list(DEFAULT_MODELS if models is None else models)
    unknown = [m for m in models if m not in served.models]
    if unknown:
        raise InputError(f"Unknown model(s) {', '.join(map(str, unknown))}; this run has {', '.join(served.models)}.")
    if not models:
        raise InputError("Choose at least one model.")
    return [m for m in served.models if m in models]  # the run's order


def _decode(tokenizer, ids) -> tuple[str, int]:
    ids = [int(i) for i in ids if int(i) not in tokenizer.all_special_ids]
    return tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids)


def _generate(model, enc, settings: Settings, **extra):
    torch.manual_seed(settings.seed)  # sampling is reproducible for a seed; under the lock, so per request
    start = time.perf_counter()
    out = model.generate(**enc, **settings.generate_kwargs(), **extra)
    return out, time.perf_counter() - start


def summarize_models(served: ServedModels, text: str, settings: Settings = Settings(),
                     prompt_template: str = DEFAULT_PROMPT, models=None) -> tuple[dict[str, Summary], bool]:
    """({model: Summary}, truncated) for the chosen models (default base, full, lora) of one dialogue."""
    text = check_text(text)
    models = check_models(served, models)
    tok = served.tokenizer
    prompt = prompt_template.format(dialogue=text)
    truncated = len(tok(prompt)["input_ids"]) > MAX_SOURCE_TOKENS
    results = {m: Summary(m, error=served.errors[m]) for m in models if not served.available(m)}
    ready = [m for m in models if served.available(m)]
    mixed = [m for m in ready if m == "base" or served.loaded.in_mixed_batch(m)]
    calls = [lambda: _mixed_call(served, prompt, settings, mixed)] if mixed else []
    calls += [lambda m=m: _own_call(served, prompt, settings, m) for m in ready if m not in mixed]
    with served.lock:
        if settings.do_sample or len(calls) < 2:
            # sampling draws from torch's global RNG: overlapping calls would interleave their draws
            outputs = [call() for call in calls]
        else:
            # greedy: the calls share no state, so they overlap (on 2 CPU cores ~10% faster than in turn)
            outputs = [f.result() for f in [_POOL.submit(call) for call in calls]]
    for out in outputs:
        results.update(out)
    return {m: results[m] for m in models}, truncated


def _encode(served: ServedModels, prompt: str, rows: int):
    return served.tokenizer([prompt] * rows, truncation=True, max_length=MAX_SOURCE_TOKENS,
                            return_tensors="pt").to(served.device)


@torch.inference_mode()
def _mixed_call(served: ServedModels, prompt: str, settings: Settings, models: list[str]) -> dict[str, Summary]:
    """Base and LoRA-family adapters as one mixed batch on the shared weights, one row per model."""
    loaded = served.loaded
    if loaded.mixed is None:  # no LoRA-family adapter in this run: base alone
        out, seconds = _generate(loaded.base, _encode(served, prompt, 1), settings)
    else:
        names = ["__base__" if m == "base" else m for m in models]
        out, seconds = _generate(loaded.mixed, _encode(served, prompt, len(models)), settings, adapter_names=names)
    results = {}
    for row, m in enumerate(models):
        text, n = _decode(served.tokenizer, out[row])
        results[m] = Summary(m, text, seconds, n, shared_call=len(models) > 1)
    return results


@torch.inference_mode()
def _own_call(served: ServedModels, prompt: str, settings: Settings, model: str) -> dict[str, Summary]:
    out, seconds = _generate(served.loaded.own[model], _encode(served, prompt, 1), settings)
    text, n = _decode(served.tokenizer, out[0])
    return {model: Summary(model, text, seconds, n)}


def summarize_all(served: ServedModels, text: str, settings: Settings = Settings(),
                  prompt_template: str = DEFAULT_PROMPT) -> tuple[dict[str, Summary], bool]:
    """Every model of the run (the original three-model entry point, kept for its callers)."""
    return summarize_models(served, text, settings, prompt_template, served.models)
