"""P3b and P4b: serving every CPU method of the registry (base, full, lora, lora_all, dora, ia3, prompt_tuning,
prefix_tuning) as the dashboard does vs one independent model copy per model, side by side in one run.

    python benchmarks/p3b_p4b_all_methods.py

P3b: weights and buffers held (distinct storages, shared ones counted once): the base held once with every
adapter on it + the full model, vs one copy per model. P4b: one /summarize_all request (every model: base and
LoRA-family rows in one mixed batch, the others' calls overlapped) vs one separate `generate` per model, in turn.
Outputs of both sides are compared (greedy): they must be identical.
"""

import tempfile
import time
from pathlib import Path

import torch
from common import base_arguments, load_setup, record
from p3_serving_memory import tensor_bytes
from serving_fixture import load_separate_all, make_all_methods_run


def separate_outputs(models, tokenizer, prompt, new):
    enc = tokenizer([prompt], truncation=True, max_length=512, return_tensors="pt")
    texts = {}
    with torch.inference_mode():
        for name, model in models.items():
            out = model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1)
            texts[name] = tokenizer.decode([int(i) for i in out[0] if int(i) not in tokenizer.all_special_ids],
                                           skip_special_tokens=True).strip()
    return texts


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--n", type=int, default=4, help="dialogues (one request each)")
    parser.add_argument("--max-new-tokens", type=int, default=60)
    args = parser.parse_args()
    n, new = (1, 4) if args.smoke else (args.n, args.max_new_tokens)
    setup = load_setup(n, args.smoke)
    print(setup.source, flush=True)
    from contract.protocol import DEFAULT_PROMPT
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_all_methods_run(Path(tmp) / "run", setup)
        served = load_models(folder, device="cpu")
        separate = load_separate_all(folder)
    loaded = served.loaded
    ours_bytes = tensor_bytes(
        [m for m in (loaded.base, *loaded.mixed.values(), *loaded.own.values()) if m is not None]
    )
    record("P3b", ours_bytes / 2**20, tensor_bytes(separate.values()) / 2**20,
           f"MiB (weights and buffers held, shared storage counted once; {len(separate)} models)", "<= 0.30x",
           args.results, setup=setup.source, models=list(separate))
    settings = Settings(max_new_tokens=new)
    served.submit(setup.dialogues[0], Settings(max_new_tokens=2), models=loaded.models).result()  # warm-up
    separate_outputs(separate, setup.tokenizer, DEFAULT_PROMPT.format(dialogue=setup.dialogues[0]), 2)
    ours, lab, identical = 0.0, 0.0, 0
    for dialogue in setup.dialogues:
        start = time.perf_counter()
        summaries = served.submit(dialogue, settings, models=loaded.models).result()
        ours += time.perf_counter() - start
        start = time.perf_counter()
        texts = separate_outputs(separate, setup.tokenizer, DEFAULT_PROMPT.format(dialogue=dialogue), new)
        lab += time.perf_counter() - start
        identical += sum(summaries[m].text == texts[m] for m in texts)
    total = n * len(separate)
    print(f"outputs identical: {identical}/{total}")
    record("P4b", ours / n, lab / n, f"seconds per request ({len(separate)} models)", "<= 0.6x", args.results,
           setup=setup.source, max_new_tokens=new, requests=n, identical_outputs=f"{identical}/{total}")


if __name__ == "__main__":
    main()
