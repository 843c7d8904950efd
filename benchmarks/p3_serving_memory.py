"""P3: memory with the three models resident as the dashboard loads them (one base copy carrying the LoRA adapter,
plus the full model) vs three separate copies, each side in its own process, after one summary per model.

    python benchmarks/p3_serving_memory.py

Memory is RSS after loading and one generation per model, minus RSS before loading (taken after a warm-up
generation with a throwaway tiny model, so torch's pools and caches are already there): the models' share of the
process. The whole-process RSS of both sides is recorded too.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import base_arguments, load_setup, record, rss_bytes
from serving_fixture import load_separate, make_run


def warm_up(setup) -> None:
    """One generation with a small throwaway model, so torch's thread pools, kernel caches and allocator arenas
    exist before the first reading: they are the process's, not the models', and equal on both sides."""
    import gc

    from transformers import AutoModelForSeq2SeqLM, T5Config

    from training.config import TINY_T5

    config = T5Config(vocab_size=setup.config.vocab_size, decoder_start_token_id=0, **TINY_T5)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    with torch.inference_mode():
        model.generate(**setup.tokenizer([setup.dialogues[0]] * 3, return_tensors="pt"), max_new_tokens=8)
    del model
    gc.collect()


def tensor_bytes(models) -> int:
    """Bytes of the distinct parameter and buffer storages the models hold (shared weights counted once)."""
    seen, total = set(), 0
    for model in models:
        for t in [*model.parameters(), *model.buffers()]:
            storage = t.untyped_storage()  # views into one storage count once
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def run_side(side: str, folder: Path, smoke: bool) -> dict:
    from transformers import AutoTokenizer

    from dashboard.inputs import Settings  # imports before the first reading: code is not model memory
    from dashboard.serving import load_models

    setup = load_setup(1, smoke)
    warm_up(setup)
    before = rss_bytes()
    if side == "ours":
        served = load_models(folder, device="cpu")  # loads its tokenizer too
        served.submit(setup.dialogues[0], Settings(max_new_tokens=8), models=served.loaded.models).result()
        loaded = served.loaded
        weights = tensor_bytes(
            [m for m in (loaded.base, *loaded.mixed.values(), *loaded.own.values()) if m is not None]
        )
    else:
        models = load_separate(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder / "base" / "model")  # as the dashboard side loads one
        enc = tokenizer([setup.dialogues[0]], return_tensors="pt")
        with torch.inference_mode():
            for m in models.values():
                m.generate(**enc, max_new_tokens=8)
        weights = tensor_bytes(models.values())
    return {"memory_bytes": rss_bytes() - before, "absolute_bytes": rss_bytes(), "tensor_bytes": weights,
            "source": setup.source}


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--side", choices=["ours", "separate"], help="internal: run one side in this process")
    parser.add_argument("--folder", type=Path, help="internal: the run folder")
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.folder, args.smoke)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_run(Path(tmp) / "run", load_setup(1, args.smoke))
        sides = {}
        for side in ("ours", "separate"):
            cmd = [sys.executable, __file__, "--side", side, "--folder", str(folder)] + (
                ["--smoke"] if args.smoke else []
            )
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            sides[side] = json.loads(out.stdout.strip().splitlines()[-1])
            print(side, sides[side], flush=True)
    record("P3", sides["ours"]["tensor_bytes"] / 2**20, sides["separate"]["tensor_bytes"] / 2**20,
           "MiB (weights and buffers held, shared storage counted once)", "<= 0.70x", args.results,
           setup=sides["ours"]["source"])
    record("P3", sides["ours"]["memory_bytes"] / 2**20, sides["separate"]["memory_bytes"] / 2**20,
           "MiB (RSS of the resident models)", "<= 0.70x", args.results, setup=sides["ours"]["source"],
           absolute_rss_mib={k: v["absolute_bytes"] / 2**20 for k, v in sides.items()})


if __name__ == "__main__":
    main()
