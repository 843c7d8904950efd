"""Summarising a pasted dialogue with any set of the run's models: inputs validated here, generation by the
models' one worker (dashboard/batcher.py), which serves requests arriving together in shared batched calls.

Base and every LoRA-family adapter run as ONE mixed batch on the shared weights (peft's adapter_names: one row
per model, "__base__" for base); every other method (full, DoRA, IA³, prompt/prefix tuning) is a call of its own,
because peft silently ignores adapter_names for them.
"""

import math
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Optional

from dashboard.models import ServedModels

MAX_CHARS = 100_000           # a long chat export is normal to paste; the models read its first 512 tokens
MAX_REFERENCE_CHARS = 20_000  # ROUGE against a reference costs time in its length: bounded tighter
HEAD_CHARS = 20_000           # only this much of the text is tokenized: 512 tokens never span more
MAX_SOURCE_TOKENS = 512       # FLAN-T5's input length
MAX_SEED = 2**32 - 1
DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
DEFAULT_MODELS = ("base", "full", "lora")


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
    shared_call: bool = False   # generated in one batched call with other rows (models or requests); seconds = its
    error: Optional[str] = None


def check_text(text, name: str = "dialogue", required: bool = True) -> str:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(f"The {name} must be text (got {type(text).__name__}).")
    text = text.strip()
    if required and not text:
        raise InputError("Paste a dialogue first: the text box is empty.")
    limit = MAX_CHARS if required else MAX_REFERENCE_CHARS
    if len(text) > limit:
        raise InputError(f"The {name} has {len(text):,} characters; the limit is {limit:,}. The models read only "
                         f"the first {MAX_SOURCE_TOKENS} tokens anyway: paste a shorter text.")
    if text and not any(ch.isalnum() for ch in text):
        raise InputError(f"The {name} has no letters or digits at all: there is nothing to summarize.")
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


def prepare(served: ServedModels, text: str, prompt_template: str = DEFAULT_PROMPT) -> tuple[str, bool]:
    """(the prompt the models read, truncated?). Only the text's head is tokenized: the rest is never read."""
    text = check_text(text)
    prompt = prompt_template.format(dialogue=text[:HEAD_CHARS])
    truncated = len(text) > HEAD_CHARS or len(served.tokenizer(prompt)["input_ids"]) > MAX_SOURCE_TOKENS
    return prompt, truncated


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


def submit(served: ServedModels, text: str, settings: Settings = Settings(), prompt_template: str = DEFAULT_PROMPT,
           models=None, on_tokens: Optional[Callable[[str, list], None]] = None) -> Request:
    """Validate, then queue one request for the models' worker."""
    prompt, truncated = prepare(served, text, prompt_template)
    models = check_models(served, models)
    unavailable = {m: Summary(m, error=served.errors[m]) for m in models if not served.available(m)}
    ready = [m for m in models if served.available(m)]
    return Request(models, truncated, served.batcher.submit(prompt, settings, ready, on_tokens), unavailable)


def summarize_models(served: ServedModels, text: str, settings: Settings = Settings(),
                     prompt_template: str = DEFAULT_PROMPT, models=None) -> tuple[dict[str, Summary], bool]:
    """({model: Summary}, truncated) for the chosen models (default base, full, lora) of one dialogue."""
    request = submit(served, text, settings, prompt_template, models)
    return request.result(), request.truncated


def summarize_all(served: ServedModels, text: str, settings: Settings = Settings(),
                  prompt_template: str = DEFAULT_PROMPT) -> tuple[dict[str, Summary], bool]:
    """Every model of the run (the original three-model entry point, kept for its callers)."""
    return summarize_models(served, text, settings, prompt_template, served.models)
