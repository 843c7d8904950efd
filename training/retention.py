"""What fine-tuning cost the base outside DialogSum: each model's loss on a fixed held-out sample of the base's own
earlier task, and its change from the base with a 95% paired bootstrap interval (PEFT's method comparison records
the same kind of figure; "LoRA learns less and forgets less", Biderman et al. 2024).

The task is the one the base learned before any fine-tuning:
- FLAN-T5 (every real preset): T5's span corruption (15% of the tokens in spans of about 3, each span replaced by a
  sentinel <extra_id_N>; the target is the sentinels followed by their spans) on general web text: the first
  RETENTION_TEXTS documents of allenai/c4's English validation split through `datasets` (streamed), or
  `--retention_data PATH` (a .txt file, one document a line, or a .jsonl file with a "text" field) offline.
- tiny: its own copy pre-training (dialogue in, its first turn out; training/tiny_pretrain.py) on the evaluation's
  test dialogues, which the copy pre-training never saw.

A positive change is forgetting: the model is worse than the base at what the base could do.
"""

import json
import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from scoring.stats import bootstrap_ci
from training.config import ConfigError
from training.tiny_pretrain import first_turn

RETENTION_TEXTS = 200          # documents (or dialogues) in the sample: a CI of a few hundredths of a nat
HUB_TEXT = ("allenai/c4", "en", "validation")
NOISE_DENSITY, MEAN_SPAN = 0.15, 3.0   # T5's span corruption
MAX_TOKENS = 256


class RetentionDataError(ConfigError):
    """--retention_data that cannot be read; the message names the file and what to give."""


MIN_TEXTS, MIN_WORDS = 20, 8     # a usable file: 20 documents of 8 words or more (a word is at least one token)
MAX_LINE_BYTES = 64_000          # a document is cut here (MAX_TOKENS read it anyway); a longer line is read past
MAX_DOCUMENT_CHARS = 4_000       # far past MAX_TOKENS tokens: what a document keeps after decoding


def lines_of(path: Path):
    """(line number, text) of each line, decoded as UTF-8 and cut to MAX_LINE_BYTES: a 50 MB line costs a read,
    not memory."""
    with path.open("rb") as f:
        for number, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES), b""), 1):
            cut = not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES
            while cut and (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # the rest of an over-long line, read past without keeping it
            try:
                yield number, raw.decode("utf-8", errors="ignore" if cut else "strict")  # a cut may split a char
            except UnicodeDecodeError:
                raise RetentionDataError(f"--retention_data {path} line {number} is not UTF-8 text: save the file "
                                         "as UTF-8.") from None


def document(path: Path, number: int, line: str) -> str:
    """One line's document: the line, or for .jsonl the string in its "text" field; cut to MAX_DOCUMENT_CHARS."""
    if path.suffix != ".jsonl" or not line.strip():
        return line.strip()[:MAX_DOCUMENT_CHARS]
    try:
        text = json.loads(line)["text"]
    except (ValueError, KeyError, TypeError):
        text = None
    if not isinstance(text, str):
        raise RetentionDataError(f"--retention_data {path} line {number}: every line of a .jsonl file must be a "
                                 "JSON object with a 'text' string field.")
    return text.strip()[:MAX_DOCUMENT_CHARS]


def read_texts(path: Path, limit: int = RETENTION_TEXTS) -> list[str]:
    """Up to `limit` documents of MIN_WORDS words or more from a local file: .txt (one a line) or .jsonl (a "text"
    field a line). Refuses, naming the file and line, what cannot be read, and a file with fewer than MIN_TEXTS
    documents long enough to score."""
    texts, too_short = [], 0
    for number, line in lines_of(path):
        text = document(path, number, line)
        if len(text.split()) >= MIN_WORDS:
            texts.append(text)
        elif text:
            too_short += 1
        if len(texts) == limit:
            break
    if len(texts) < min(MIN_TEXTS, limit):
        raise RetentionDataError(
            f"--retention_data {path}: {len(texts)} documents of {MIN_WORDS} words or more ({too_short} shorter "
            f"left out); the retention score needs at least {MIN_TEXTS}: give more general text, or 'none'.")
    return texts


def check_retention_data(value: str) -> None:
    """--retention_data: 'hub', 'none', or a file read and checked whole (before any work): readable, UTF-8, the
    .jsonl fields, enough documents long enough to score."""
    if value in ("hub", "none"):
        return
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--retention_data {value}: no such file; give 'hub', 'none' or a .txt / .jsonl file of "
                          "general text.")
    try:
        read_texts(path)
    except OSError as e:
        raise RetentionDataError(f"--retention_data {value} cannot be read ({e.strerror}); fix its permissions or "
                                 "give another file.") from None


def web_texts(source: Optional[str], limit: int = RETENTION_TEXTS) -> tuple[list[str], str]:
    """(documents, where they came from): --retention_data's file, else c4's validation split from the Hub."""
    if source and source != "hub":
        path = Path(source)
        if not path.is_file():
            raise RetentionDataError(f"--retention_data {source}: no such file; give a .txt or .jsonl file.")
        return read_texts(path)[:limit], str(path.name)
    from datasets import load_dataset

    name, config, split = HUB_TEXT
    stream = load_dataset(name, config, split=split, streaming=True)
    return [row["text"] for _, row in zip(range(limit), stream)], f"{name} ({config}, {split})"


def span_corruption(ids: list[int], sentinels: list[int], eos: int, rng: random.Random) -> tuple[list, list]:
    """T5's objective on one token sequence: (input with each noise span replaced by a sentinel, target of the
    sentinels each followed by the span it replaced)."""
    n = len(ids)
    spans = max(1, round(n * NOISE_DENSITY / MEAN_SPAN))
    starts = sorted(rng.sample(range(max(1, n - int(MEAN_SPAN))), min(spans, max(1, n - int(MEAN_SPAN)))))
    source, target, position = [], [], 0
    for k, start in enumerate(starts[:len(sentinels)]):
        start = max(start, position)
        end = min(n, start + int(MEAN_SPAN))
        if start >= end:
            continue
        source += ids[position:start] + [sentinels[k]]
        target += [sentinels[k]] + ids[start:end]
        position = end
    return source + ids[position:] + [eos], target + [eos]


def copy_pairs(dialogues: list[str], tokenizer) -> list[tuple[list, list]]:
    """The tiny base's own task on held-out dialogues: dialogue in, its first turn out."""
    sources = tokenizer(dialogues, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    targets = tokenizer(text_target=[first_turn(d) for d in dialogues], truncation=True, max_length=64)["input_ids"]
    return list(zip(sources, targets))


def corruption_pairs(texts: list[str], tokenizer, seed: int = 0) -> list[tuple[list, list]]:
    sentinels = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)])
    rng = random.Random(seed)
    pairs = []
    for ids in tokenizer(texts, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS)["input_ids"]:
        if len(ids) >= MIN_WORDS:
            pairs.append(span_corruption(ids, sentinels, tokenizer.eos_token_id, rng))
    return pairs


def shift_right(labels: torch.Tensor, pad: int) -> torch.Tensor:
    """T5's decoder inputs for `labels`: the start token (T5's is the pad token), then the labels but the last."""
    decoder_inputs = torch.full_like(labels, pad)
    decoder_inputs[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, pad)
    return decoder_inputs


@torch.inference_mode()
def example_losses(model, pairs: list[tuple[list, list]], pad: int, batch_size: int = 16) -> list[float]:
    """Each example's mean cross-entropy per target token (nats)."""
    device = next(model.parameters()).device
    losses = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        width_in, width_out = max(len(s) for s, _ in batch), max(len(t) for _, t in batch)
        inputs = torch.tensor([s + [pad] * (width_in - len(s)) for s, _ in batch], device=device)
        labels = torch.tensor([t + [-100] * (width_out - len(t)) for _, t in batch], device=device)
        decoder_inputs = shift_right(labels, pad)  # not labels=: AdaLoRA adds its training regulariser then
        mask = (inputs != pad).long()
        logits = model(input_ids=inputs, attention_mask=mask, decoder_input_ids=decoder_inputs).logits
        token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, reduction="none",
                                                       ignore_index=-100)
        counted = (labels != -100).sum(dim=1).clamp(min=1)
        losses += (token_loss.sum(dim=1) / counted).tolist()
    return losses


def retention(loaded, pairs: list, task: str, resamples: int, seed: int) -> dict:
    """eval/metrics.json's `retention`: the task, and per model its mean loss and its change from the base. With
    no example to score it says why (`not_measured`) and holds no model."""
    if not pairs:
        return {"task": task, "n_examples": 0, "models": {},
                "not_measured": f"no example of {MIN_WORDS} tokens or more to score"}
    pad = loaded.tokenizer.pad_token_id
    losses = {name: example_losses(loaded.model_for(name), pairs, pad)
              for name in loaded.models if loaded.available(name)}
    base = np.array(losses.get("base", []))
    unusable = sorted(name for name, values in losses.items() if not np.isfinite(values).all())
    models = {}
    for name, values in losses.items():
        if name in unusable:
            continue
        change = np.array(values) - base if len(base) and "base" not in unusable else None
        mean, low, high = bootstrap_ci(change, resamples=resamples, seed=seed) if change is not None else (None,) * 3
        models[name] = {"loss": float(np.mean(values)), "change": mean, "ci_low": low, "ci_high": high}
    result = {"task": task, "n_examples": len(pairs), "models": models}
    if unusable:
        result["not_measured"] = f"a loss that is not a finite number for {', '.join(unusable)}"
    return result
