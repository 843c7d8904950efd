"""A short copy pre-training for the tiny preset's base: dialogue in, its first turn out.

A random T5 writes nothing (it emits padding), so the demo's "base" column would be empty and LoRA, which can only
adapt a frozen network, would have nothing to adapt. A few hundred steps of copying give the tiny base what a real
pretrained base has in miniature: it reads the dialogue and writes text from it (and scores a low, non-zero ROUGE,
as untuned FLAN-T5 does). It is NOT trained on summaries.

Hand-written loop, not the Trainer: it runs on the main process alone while the others wait (main_process_first),
and a Trainer there would join the distributed process group under torchrun and hang.
"""

import random

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq

from contract.protocol import MAX_SOURCE_TOKENS


def first_turn(dialogue: str) -> str:
    return dialogue.strip().split("\n")[0]


def pretrain_copy(model, tokenizer, dialogues: list[str], steps: int, seed: int, batch_size: int = 16,
                  learning_rate: float = 3e-3) -> list[float]:
    """Train `model` in place for `steps` steps; returns the loss of every step."""
    rng = random.Random(seed)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    examples = [{"input_ids": tokenizer(d, truncation=True, max_length=MAX_SOURCE_TOKENS)["input_ids"],
                 "labels": tokenizer(text_target=first_turn(d), truncation=True, max_length=64)["input_ids"]}
                for d in dialogues]
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="tiny base", unit="step", mininterval=1.0):
        batch = collator(rng.sample(examples, min(batch_size, len(examples))))
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
