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


def read_texts(path: Path) -> list[str]:
    """Documents from a local file: .txt (one a line) or .jsonl (a "text" field a line)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            return [str(json.loads(line)["text"]) for line in lines]
        except (ValueError, KeyError, TypeError) as e:
            raise RetentionDataError(f"--retention_data {path}: every line must be a JSON object with a 'text' "
                                     f"field ({e}).") from None
    return lines


def check_retention_data(value: str) -> None:
    """--retention_data: 'hub', 'none', or a file that exists (checked before any work)."""
    if value not in ("hub", "none") and not Path(value).is_file():
        raise ConfigError(f"--retention_data {value}: no such file; give 'hub', 'none' or a .txt / .jsonl file of "
                          "general text.")


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
        if len(ids) >= 8:
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
    """eval/metrics.json's `retention`: the task, and per model its mean loss and its change from the base."""
    pad = loaded.tokenizer.pad_token_id
    losses = {name: example_losses(loaded.model_for(name), pairs, pad)
              for name in loaded.models if loaded.available(name)}
    base = np.array(losses.get("base", []))
    models = {}
    for name, values in losses.items():
        change = np.array(values) - base if len(base) else None
        mean, low, high = bootstrap_ci(change, resamples=resamples, seed=seed) if change is not None else (None,) * 3
        models[name] = {"loss": float(np.mean(values)), "change": mean, "ci_low": low, "ci_high": high}
    return {"task": task, "n_examples": len(pairs), "models": models}
