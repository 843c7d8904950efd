"""What a method can do once trained, measured on a model built here (the tiny T5, no weights read): whether peft
serves it exactly in one mixed batch, and whether it merges into the base. metrics.json records it (the trainer)
and the capability tables show it (training/catalogue.py).
"""

import warnings

import torch
from transformers import AutoModelForSeq2SeqLM, T5Config

from contract.protocol import MIXED_BATCH_TYPES
from training.config import TINY_T5, TINY_VOCAB_SIZE
from training.methods import Method
from training.modeling import untie_lm_head

TINY_CONFIG = T5Config(vocab_size=TINY_VOCAB_SIZE, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                       **TINY_T5)


def wrapped(method: Method, config, device: str = "cpu"):
    """The model a method trains, built from a config (no weights read), on `device`."""
    from peft import get_peft_model

    torch.manual_seed(0)
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = AutoModelForSeq2SeqLM.from_config(config)
        if config.vocab_size != TINY_VOCAB_SIZE:  # the real checkpoints have their own lm_head
            base = untie_lm_head(base)
        return base if method.peft is None else get_peft_model(base, method.peft_config(config))


def merges(method: Method) -> bool:
    """peft can fold the trained adapter into the base weights (merge_and_unload): served at the base's cost."""
    try:
        wrapped(method, TINY_CONFIG).merge_and_unload()
        return True
    except Exception:  # peft raises AttributeError, NotImplementedError or ValueError for types that cannot
        return False


def mixed_batch(method: Method) -> bool:
    peft = method.peft or {}
    return peft.get("peft_type") in MIXED_BATCH_TYPES and not peft.get("use_dora")


def capabilities(method: Method) -> dict:
    """What metrics.json (and so the Metrics tab) says about a method beyond its name: serving and merging."""
    return {"mixed_batch": mixed_batch(method), "merges": method.peft is None or merges(method)}
