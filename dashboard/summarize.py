"""Summarising one pasted dialogue with base, full and LoRA.

Base and LoRA run as ONE mixed batch on the shared weights (peft's adapter_names: row 0 without the adapter, row
1 with it), so they cost one generate call; the full model is a second call, overlapped with the first when
decoding is greedy. A lock serialises requests: peft applies adapter_names through hooks on the shared modules, so
two overlapping requests would otherwise see each other's.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import torch

from dashboard.models import ADAPTER, ServedModels

MAX_CHARS = 20_000       # about 5,000 tokens: far past the 512 the model reads, small enough to tokenize instantly
MAX_SOURCE_TOKENS = 512  # FLAN-T5's input length
DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="summarize")


class InputError(ValueError):
    """Text the models should not be called on; the message is shown to the user."""


@dataclass
class Settings:
    """Generation controls; the defaults are the evaluation's (greedy, 200 new tokens)."""
    max_new_tokens: int = 200
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": int(self.max_new_tokens), "num_beams": int(self.num_beams),
                  "do_sample": bool(self.do_sample)}
        if self.do_sample:
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return kwargs


@dataclass
class Summary:
    model: str
    text: str = ""
    seconds: float = 0.0
    tokens: int = 0
    shared_call: bool = False   # base and LoRA came from one batched call; seconds is that call's
    error: Optional[str] = None


def check_text(text: Optional[str]) -> str:
    text = (text or "").strip()
    if not text:
        raise InputError("Paste a dialogue first: the text box is empty.")
    if len(text) > MAX_CHARS:
        raise InputError(f"The text has {len(text):,} characters; the limit is {MAX_CHARS:,}. The models read only "
                         f"the first {MAX_SOURCE_TOKENS} tokens anyway: paste a shorter dialogue.")
    return text


def _decode(tokenizer, ids) -> tuple[str, int]:
    ids = [int(i) for i in ids if int(i) not in tokenizer.all_special_ids]
    return tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids)


def _generate(model, enc, settings: Settings, **extra):
    torch.manual_seed(settings.seed)  # sampling is reproducible for a seed; under the lock, so per request
    start = time.perf_counter()
    out = model.generate(**enc, **settings.generate_kwargs(), **extra)
    return out, time.perf_counter() - start


def summarize_all(served: ServedModels, text: str, settings: Settings = Settings(),
                  prompt_template: str = DEFAULT_PROMPT) -> tuple[dict[str, Summary], bool]:
    """({'base'|'full'|'lora': Summary}, truncated): every model's summary of one dialogue."""
    text = check_text(text)
    tok = served.tokenizer
    prompt = prompt_template.format(dialogue=text)
    truncated = len(tok(prompt)["input_ids"]) > MAX_SOURCE_TOKENS
    results = {m: Summary(m, error=served.errors[m]) for m in ("base", "full", "lora") if not served.available(m)}
    calls = []
    if served.available("base"):
        calls.append(lambda: _shared_call(served, prompt, settings))
    if served.available("full"):
        calls.append(lambda: _full_call(served, prompt, settings))
    with served.lock:
        if settings.do_sample or len(calls) < 2:
            # sampling draws from torch's global RNG: overlapping calls would interleave their draws
            outputs = [call() for call in calls]
        else:
            # greedy: the two calls share nothing, so they overlap (on 2 CPU cores ~10% faster than in turn)
            futures = [_POOL.submit(call) for call in calls]
            outputs = [f.result() for f in futures]
    for out in outputs:
        results.update(out)
    return results, truncated


@torch.inference_mode()
def _shared_call(served: ServedModels, prompt: str, settings: Settings) -> dict[str, Summary]:
    """Base and LoRA as one mixed batch on the shared weights (base alone if the adapter is unavailable)."""
    tok = served.tokenizer
    models = ["base", "lora"] if served.available("lora") else ["base"]
    enc = tok([prompt] * len(models), truncation=True, max_length=MAX_SOURCE_TOKENS,
              return_tensors="pt").to(served.device)
    extra = {"adapter_names": ["__base__", ADAPTER]} if len(models) == 2 else {}
    out, seconds = _generate(served.shared, enc, settings, **extra)
    results = {}
    for row, m in enumerate(models):
        text, n = _decode(tok, out[row])
        results[m] = Summary(m, text, seconds, n, shared_call=len(models) == 2)
    return results


@torch.inference_mode()
def _full_call(served: ServedModels, prompt: str, settings: Settings) -> dict[str, Summary]:
    tok = served.tokenizer
    enc = tok([prompt], truncation=True, max_length=MAX_SOURCE_TOKENS, return_tensors="pt").to(served.device)
    out, seconds = _generate(served.full, enc, settings)
    text, n = _decode(tok, out[0])
    return {"full": Summary("full", text, seconds, n)}
