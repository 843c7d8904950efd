"""`--backend int8`: the run's mergeable models served in int8 through CTranslate2, the others exactly.

At start-up every model that has an int8 form (the base, the full fine-tune, each adapter peft can merge:
contract/int8.py converts and caches them) gets a CTranslate2 translator; prompt, prefix and p-tuning have none
and stay on the exact PyTorch path, as does any sampling request (CTranslate2's sampler draws other numbers than
torch's, and a seeded request must give the text it gives alone). Each summary says which backend wrote it
(`written_by`). The batcher's plan is unchanged: a mixed-batch call (base and LoRA rows) becomes one CTranslate2
call per model, and all of a batch's calls run side by side, each translator on one thread: a second thread does
little for one model's decoding, a second model in parallel does (benchmarks P11 measures it). The exact calls run
beside them.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from contract import int8
from contract.files import MODEL
from contract.protocol import BASE
from dashboard.backends import EXACT, Call, LocalBackend, generate, run_lanes

INT8 = "int8"


def model_names(call: Call) -> list[str]:
    """The model of each row of a call."""
    names = call.adapter_names or [call.model] * len(call.input_ids)
    return [BASE if n == "__base__" else n for n in names]


class Int8Backend:
    def __init__(self, loaded, special_ids: frozenset, translators: dict, vocab: int8.Vocabulary):
        self.loaded, self.special_ids = loaded, special_ids
        self.translators, self.vocab = translators, vocab
        self.exact = LocalBackend(loaded, special_ids)

    def written_by(self, model: str, settings) -> str:
        return INT8 if model in self.translators and not settings.do_sample else EXACT

    def in_int8(self, call: Call) -> bool:
        return all(name in self.translators for name in model_names(call))

    def __call__(self, calls: list[Call], settings, context=None) -> Iterator[tuple]:
        if settings.do_sample:
            return self.exact(calls, settings, context)
        lanes = [[i] for i, c in enumerate(calls) if self.in_int8(c)]  # each int8 call in a lane of its own
        lanes.append([i for i, c in enumerate(calls) if not self.in_int8(c)])

        def run_one(i: int, emit) -> None:
            if self.in_int8(calls[i]):
                self.translate(i, calls[i], settings, emit)
            else:
                generate(self.loaded, self.special_ids, i, calls[i], settings, emit)

        return run_lanes(lanes, run_one)

    def translate(self, index: int, call: Call, settings, emit) -> None:
        """One planned call in CTranslate2: one batch per model among its rows (side by side), rows streamed as
        they grow."""
        names, start = model_names(call), time.perf_counter()
        outputs = [None] * len(names)

        def one_model(name: str) -> None:
            rows = [r for r, n in enumerate(names) if n == name]
            grown = {r: [] for r in rows}

            def on_step(batch_row: int, token: int) -> None:
                row = rows[batch_row]
                if token not in self.special_ids:
                    grown[row].append(token)
                    emit(("tokens", index, row, list(grown[row])))

            out = int8.generate(self.translators[name], self.vocab, [call.input_ids[r] for r in rows],
                                settings.max_new_tokens, settings.num_beams, on_step if call.stream else None)
            for row, ids in zip(rows, out):
                outputs[row] = ids

        models = list(dict.fromkeys(names))
        with ThreadPoolExecutor(max_workers=len(models), thread_name_prefix="int8") as pool:
            list(pool.map(one_model, models))  # re-raises a model's failure
        emit(("done", index, outputs, time.perf_counter() - start))


def translator_for(run_dir: Path, base_path: str, name: str, tokenizer, mergeable: bool, say):
    """The cached conversion's translator; a cache that does not load (a truncated file, a crash mid-copy) is
    converted again once."""
    folder = int8.convert(run_dir, base_path, name, tokenizer, mergeable, say)
    try:
        return int8.load_translator(folder, threads=1)
    except (RuntimeError, ValueError, OSError) as e:
        say(f"int8: the cached conversion of {name} does not load ({str(e).splitlines()[0][:120]}); converting again")
        int8.remove_cache(run_dir, name)
        return int8.load_translator(int8.convert(run_dir, base_path, name, tokenizer, mergeable, say), threads=1)


def retry_advice(run_dir: Path, name: str) -> str:
    """What to do after a failed conversion, as this run folder allows it."""
    cache = run_dir / int8.CACHE / name
    if not os.access(run_dir, os.W_OK):
        return ("The run folder is read-only here, so the int8 form cannot be written beside it: copy the run to a "
                "writable folder to serve it in int8, or serve with --backend exact.")
    if cache.exists():
        return f"Delete {cache} and start again to retry the conversion, or serve with --backend exact."
    return "Start again to retry the conversion, or serve with --backend exact."


def int8_backend(loaded, tokenizer, run_dir: Path, mergeable: dict, say=print) -> Int8Backend:
    """Convert (or find cached) every model with an int8 form and load its translator; `mergeable[name]`: can
    peft merge that method (the run's metrics.json says). A model whose conversion fails is served exactly, and
    the reason printed."""
    translators = {}
    for name in loaded.models:
        if name in loaded.errors or not (
            name == BASE or (Path(run_dir) / name / MODEL).is_dir() or mergeable.get(name)
        ):
            continue
        try:
            translators[name] = translator_for(
                run_dir, loaded.base_path, name, tokenizer, bool(mergeable.get(name)), say
            )
        except Exception as e:  # served exactly instead, and said
            reason = str(e).splitlines()[0][:200] if str(e) else ""
            say(f"int8: {name} stays exact: {type(e).__name__}: {reason}. {retry_advice(Path(run_dir), name)}")
    return Int8Backend(loaded, frozenset(tokenizer.all_special_ids), translators, int8.Vocabulary.of(tokenizer))
