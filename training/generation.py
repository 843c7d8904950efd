"""Batched greedy generation for evaluation: inputs sorted by length so each batch pads little."""

import torch
from tqdm.auto import tqdm

from contract.protocol import MAX_NEW_TOKENS, MAX_SOURCE_TOKENS

GREEDY = {"do_sample": False, "num_beams": 1}
EVAL_BATCH_SIZE = 16  # the evaluation's generation batch (part of what its summaries depend on)


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], batch_size: int = 16, max_new_tokens: int = MAX_NEW_TOKENS,
             max_source_length: int = MAX_SOURCE_TOKENS, desc: str = "generate") -> list[str]:
    """Summaries in the order of `prompts`; truncates inputs at max_source_length as training does."""
    order = length_order(tokenizer, prompts, max_source_length)
    outputs = [""] * len(prompts)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        batch = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in batch], padding=True, truncation=True, max_length=max_source_length,
                        return_tensors="pt").to(device)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, **GREEDY)
        for i, text in zip(batch, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            outputs[i] = text.strip()
    return outputs


def length_order(tokenizer, prompts: list[str], max_source_length: int = MAX_SOURCE_TOKENS) -> list[int]:
    """The prompts' indices as generate() batches them: longest first (a memory error shows at once), ties in
    their own order, so any run of these positions sorts the same way on its own."""
    lengths = [len(ids) for ids in tokenizer(prompts, truncation=True, max_length=max_source_length)["input_ids"]]
    return sorted(range(len(prompts)), key=lambda i: -lengths[i])
