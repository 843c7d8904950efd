"""P4: side-by-side latency, one /summarize request's model time (base + LoRA as one mixed batch on shared
weights, then full) vs three sequential generate calls on three separate models, same dialogues, greedy.

    python benchmarks/p4_latency.py
"""

import tempfile
import time
from pathlib import Path

import torch
from common import base_arguments, load_setup, record
from serving_fixture import load_separate, make_run


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--n", type=int, default=6, help="dialogues (one request each)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    args = parser.parse_args()
    n, new = (2, 4) if args.smoke else (args.n, args.max_new_tokens)
    setup = load_setup(n, args.smoke)
    print(setup.source, flush=True)
    from contract.protocol import DEFAULT_PROMPT, MAX_SOURCE_TOKENS
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    def summarize_all(served, dialogue, settings):
        return served.submit(dialogue, settings, models=served.loaded.models).result()

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_run(Path(tmp) / "run", setup)
        served = load_models(folder, device="cpu")
        separate = load_separate(folder)
    settings = Settings(max_new_tokens=new)
    prompts = [DEFAULT_PROMPT.format(dialogue=d) for d in setup.dialogues]
    summarize_all(served, setup.dialogues[0], Settings(max_new_tokens=2))  # warm-up both sides
    ours, lab = 0.0, 0.0
    for dialogue, prompt in zip(setup.dialogues, prompts):
        start = time.perf_counter()
        summarize_all(served, dialogue, settings)
        ours += time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            for model in separate.values():
                enc = setup.tokenizer([prompt], truncation=True, max_length=MAX_SOURCE_TOKENS, return_tensors="pt")
                model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1)
        lab += time.perf_counter() - start
    record("P4", ours / n, lab / n, "seconds per request", "<= 0.8x", args.results, setup=setup.source,
           max_new_tokens=new, requests=n)


if __name__ == "__main__":
    main()
