"""P11: the app's int8 backend (CTranslate2) vs its exact one (PyTorch fp32), side by side in one run.

    python benchmarks/p11_int8.py                   # flan-t5-small and flan-t5-base architectures (~10 min, 2 CPUs)
    python benchmarks/p11_int8.py --archs small     # one of them

P11: one side-by-side request for base + full + LoRA (what Compare sends), served as the app serves it
(`load_models(..., backend=...)`, the batcher, streaming on), int8 vs exact, on random weights of each
architecture with the real FLAN-T5 tokenizer, DialogSum test dialogues of 250-350 prompt tokens and a fixed number
of new tokens (the special tokens' embedding rows are zeroed, so neither side stops early; the tokens generated
are counted and recorded). Goal <= 0.35x on both.
P11-core: one request for every core CPU method (base, full, lora, lora_all, dora, ia3, prompt_tuning,
prefix_tuning; prompt and prefix tuning cannot be merged and stay exact in int8) on the small architecture.
Goal <= 0.5x.
P11-memory: resident memory after loading the models and serving one request with them, int8 vs exact, each in a
fresh process (the int8 backend also holds the exact models: prompt-learning methods and sampling requests are
served exactly, so what their weights cost shows only once a request touches them).
"""

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, base_arguments, load_setup, record
from serving_fixture import make_all_methods_run, make_run

ARCHS = {"small": "flan-t5-small-config", "base": "flan-t5-base-config"}
THREE = ["base", "full", "lora"]


def setup_for(arch: str, n: int, smoke: bool):
    """n dialogues whose prompt is 250-350 tokens, on the architecture's config (the tiny one with --smoke)."""
    from transformers import AutoConfig

    from contract.protocol import DEFAULT_PROMPT

    setup = load_setup(400, smoke)
    sized = [d for d in setup.dialogues
             if 250 <= len(setup.tokenizer(DEFAULT_PROMPT.format(dialogue=d))["input_ids"]) <= 350] or setup.dialogues
    if smoke or not (SHARED / "models" / ARCHS[arch]).is_dir():
        return dataclasses.replace(setup, dialogues=sized[:n])
    return dataclasses.replace(
        setup,
        dialogues=sized[:n],
        config=AutoConfig.from_pretrained(SHARED / "models" / ARCHS[arch]),
        source=setup.source.replace("flan-t5-small", f"flan-t5-{arch}"),
    )


def timed_requests(served, dialogues, models, settings) -> tuple[float, int, dict]:
    """Seconds per request, tokens generated in all, and which backend wrote each model's last summary."""
    served.submit(dialogues[0], dataclasses.replace(settings, max_new_tokens=2), models=models).result()  # warm-up
    seconds, tokens = 0.0, 0
    for dialogue in dialogues:
        start = time.perf_counter()
        summaries = served.submit(dialogue, settings, models=models, on_tokens=lambda *_: None).result()
        seconds += time.perf_counter() - start
        assert not any(s.error for s in summaries.values()), {m: s.error for m, s in summaries.items()}
        tokens += sum(s.tokens for s in summaries.values())
    return seconds / len(dialogues), tokens, {m: s.backend for m, s in summaries.items()}


def side_by_side(folder: Path, setup, models, new: int, label: str, goal: str, results: Path, benchmark: str):
    from dashboard.inputs import Settings
    from dashboard.serving import load_models

    settings = Settings(max_new_tokens=new)
    exact = load_models(folder, device="cpu")
    ours, ours_tokens, written_by = timed_requests(load_models(folder, device="cpu", backend="int8"), setup.dialogues,
                                                   models, settings)
    theirs, exact_tokens, _ = timed_requests(exact, setup.dialogues, models, settings)
    print(f"{benchmark} {label}: tokens generated int8 {ours_tokens}, exact {exact_tokens}; written by {written_by}")
    record(benchmark, ours, theirs, f"seconds per request ({len(models)} models, int8 vs exact backend)", goal,
           results, setup=setup.source, architecture=label, max_new_tokens=new, requests=len(setup.dialogues),
           tokens={"int8": ours_tokens, "exact": exact_tokens}, written_by=written_by)


def resident_mib(folder: Path, backend: str, dialogue: str, models: list[str]) -> float:
    """RSS growth of a fresh process from after its imports to after loading the run's models with this backend
    and serving one request for `models` (weights are memory-mapped: only what a request touches is resident)."""
    code = ("import sys, json; sys.path.insert(0, 'benchmarks'); from common import rss_bytes; "
            "import ctranslate2; from dashboard.inputs import Settings; from dashboard.serving import load_models; "
            "before = rss_bytes(); "
            f"m = load_models({str(folder)!r}, device='cpu', backend={backend!r}); "
            f"m.submit({dialogue!r}, Settings(max_new_tokens=8), models={models!r}).result(); "
            "import gc; gc.collect(); print(json.dumps((rss_bytes() - before) / 2**20))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--archs", default="small,base", help="comma list of: small, base")
    parser.add_argument("--n", type=int, default=3, help="dialogues (one request each)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    n, new = (1, 4) if args.smoke else (args.n, args.max_new_tokens)
    for arch in ["small"] if args.smoke else args.archs.split(","):
        setup = setup_for(arch, n, args.smoke)
        print(setup.source, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_run(Path(tmp) / "run", setup)
            side_by_side(folder, setup, THREE, new, arch, "<= 0.35x", args.results, "P11")
            record("P11-memory", *(resident_mib(folder, b, setup.dialogues[0], THREE) for b in ("int8", "exact")),
                   "MiB resident after loading base + full + LoRA and one request (int8 backend vs exact)", "reported",
                   args.results, setup=setup.source, architecture=arch)
            if arch == "small":
                from contract.files import list_methods
                from training.methods import CORE

                folder = make_all_methods_run(folder, setup, CORE)
                core = ["base", *list_methods(folder)]
                side_by_side(folder, setup, core, new, arch, "<= 0.5x", args.results, "P11-core")


if __name__ == "__main__":
    main()
