"""A run's models in int8 through CTranslate2, the same way for serving (dashboard, --backend int8) and for
measuring what int8 costs in quality (training/int8_quality.py).

CTranslate2 has no adapters: a model is merged first (the full fine-tune as it is; an adapter folded into a copy of
the base with peft's merge_and_unload; the base itself), then converted with CTranslate2's Transformers converter
to int8 weights. Each conversion is cached in <run>/.int8/<model>/ (hidden: never a method, never published) with
the key of the files it came from (their paths, sizes and content hashes): a changed adapter, model or base is
converted again; the folder is written beside and renamed into place, so it is whole or absent. Methods peft
cannot merge (prompt, prefix and p-tuning) have no int8 form: they stay on the exact path.
"""

import fcntl
import hashlib
import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from contract.files import ADAPTER, MODEL, digest_file, save_folder_atomically
from contract.protocol import BASE

CACHE = ".int8"
KEY_FILE = "source.json"
QUANTIZATION = "int8"


class NotMergeable(ValueError):
    """The method has no int8 form (peft cannot merge it): it is served exactly."""


def sources(run_dir: Path, base_path: str, model: str) -> list[Path]:
    """The folders a model's int8 form is made from: the base (and the adapter), or the full model."""
    folder = Path(run_dir) / model
    if model == BASE:
        return [Path(base_path)]
    if (folder / MODEL).is_dir():
        return [folder / MODEL]
    return [Path(base_path), folder / ADAPTER]


def source_key(folders: list[Path]) -> str:
    """A digest of every weight and config file the conversion reads (a Hub id stands for itself)."""
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            digest.update(str(folder).encode())
            continue
        for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors",
                                                                                       ".bin", ".model")):
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
            digest_file(digest, file)
    return digest.hexdigest()


def merged_model(run_dir: Path, base_path: str, model: str, mergeable: bool):
    """The model as one plain transformers model (adapters folded into a fresh copy of the base)."""
    from transformers import AutoModelForSeq2SeqLM

    folder = Path(run_dir) / model
    if model != BASE and (folder / MODEL).is_dir():
        return AutoModelForSeq2SeqLM.from_pretrained(folder / MODEL)
    base = AutoModelForSeq2SeqLM.from_pretrained(base_path)
    if model == BASE:
        return base
    if not mergeable:
        raise NotMergeable(f"{model}: peft cannot merge it into the base")
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder / ADAPTER)).merge_and_unload()


def convert(run_dir: Path, base_path: str, model: str, tokenizer, mergeable: bool,
            say: Callable[[str], None] = print) -> Path:
    """<run>/.int8/<model>: converted once, again only when its source files changed."""

    target = Path(run_dir) / CACHE / model
    key = source_key(sources(run_dir, base_path, model))
    target.parent.mkdir(exist_ok=True)
    with one_converter(target):  # a second process waits here, then finds the first one's folder
        if cached_key(target) == key:
            return target
        return write_converted(run_dir, base_path, model, tokenizer, mergeable, key, target, say)


def cached_key(target: Path) -> Optional[str]:
    """The source key the cached conversion was made from; None when there is none or its key file is damaged."""
    try:
        return json.loads((target / KEY_FILE).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def one_converter(target: Path):
    """An exclusive lock on <run>/.int8/<model>.lock for the check-then-convert: two processes serving one run
    would otherwise both convert and swap folders under each other."""
    with open(target.with_name(f"{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_converted(run_dir: Path, base_path: str, model: str, tokenizer, mergeable: bool, key: str, target: Path,
                    say: Callable[[str], None]) -> Path:
    import ctranslate2.converters

    say(f"int8: converting {model} with CTranslate2 (once; cached in {target})")
    merged = merged_model(run_dir, base_path, model, mergeable)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

        def write(folder: Path):
            ctranslate2.converters.TransformersConverter(tmp).convert(str(folder), quantization=QUANTIZATION,
                                                                      force=True)
            (folder / KEY_FILE).write_text(json.dumps({"key": key, "quantization": QUANTIZATION}))

        save_folder_atomically(target, write)
    return target


def load_translator(folder: Path, threads: Optional[int] = None):
    import ctranslate2
    import torch

    return ctranslate2.Translator(str(folder), device="cpu", compute_type=QUANTIZATION,
                                  intra_threads=threads or torch.get_num_threads())


@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer's id <-> token tables as plain Python (CTranslate2 reads tokens, the app speaks ids): read
    from any thread without touching the Rust tokenizer's state."""
    tokens: tuple
    ids: dict
    pad: int
    special: frozenset

    @classmethod
    def of(cls, tokenizer) -> "Vocabulary":
        ids = tokenizer.get_vocab()
        tokens = [""] * (max(ids.values()) + 1)
        for token, i in ids.items():
            tokens[i] = token
        return cls(tuple(tokens), ids, tokenizer.pad_token_id, frozenset(tokenizer.all_special_ids))


def generate(translator, vocab: Vocabulary, input_ids: list[list[int]], max_new_tokens: int, num_beams: int = 1,
             on_step: Optional[Callable[[int, int], None]] = None) -> list[list[int]]:
    """Summaries of token-id rows (padding ignored) as token ids without special tokens, greedy or beam search as
    transformers' generate does it; `on_step(row, token id)` for each new token of a greedy call (streaming)."""
    source = [[vocab.tokens[t] for t in row if t != vocab.pad] for row in input_ids]

    def step(result) -> bool:
        on_step(result.batch_id, result.token_id)
        return False  # go on

    results = translator.translate_batch(source, beam_size=num_beams, max_decoding_length=max_new_tokens,
                                         max_input_length=0, callback=step if on_step and num_beams == 1 else None)
    return [[t for t in (vocab.ids[tok] for tok in r.hypotheses[0]) if t not in vocab.special] for r in results]


def remove_cache(run_dir: Path, model: Optional[str] = None) -> None:
    """The whole cache, or one model's conversion (one that does not load: it is converted again)."""
    shutil.rmtree(Path(run_dir) / CACHE / (model or ""), ignore_errors=True)
