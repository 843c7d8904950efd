"""What serving each model costs, in every form it can be served: measured on this machine's device from the run's
own test dialogues, with the evaluation's decoding (greedy, its prompt, input and summary lengths).

Forms: `exact` (the base or a full fine-tune as it is; an adapter on the shared base, in a mixed batch where peft
can mix its kind (adapter_names), else alone), `merged` (an adapter folded into a copy of the base: a plain model,
no adapter overhead) and `int8` (merged, then CTranslate2 int8 on the CPU: contract/int8.py). Per form: latency at
one request (p50, p95 over the dialogues, each alone), throughput at a full batch (every dialogue, --batch_size at
a time), and the weights it holds in memory. Seconds per 1,000 summaries = 1,000 / throughput: what a busy server
pays; the money is the page's (a price per device-hour). Written to <run>/eval/serving.json.

    python -m training.serving_cost --run artifacts/tiny
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from contract import int8
from contract.files import EVAL_SERVING, RUN_JSON, method_metrics, read_evaluation, read_run_file, write_run_file
from contract.loading import load_run_models
from contract.protocol import BASE
from training.cli import run_cli
from training.config import ConfigError, check_counts, parse_options
from training.data import format_prompt
from training.provenance import device_name, utc_now

EXACT, MERGED, INT8 = "exact", "merged", "int8"
CPU = "cpu"


@dataclass
class ServingConfig:
    run: str = field(metadata={"help": "An evaluated run folder (python -m training.evaluate --run ... first)."})
    dialogues: int = field(default=16, metadata={"help": "The first N test dialogues of the evaluation are served."})
    batch_size: int = field(default=8, metadata={"help": "A full batch: requests served in one generate call."})
    latency_requests: int = field(default=0, metadata={
        "help": "Requests timed alone for the latency percentiles (the first N dialogues); 0: every dialogue."})


Generate = Callable[[list[list[int]]], object]  # token-id rows -> summaries (waited for)


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def measured(generate: Generate, rows: list[list[int]], batch_size: int, alone_rows: int, device: str,
             weights: int) -> dict:
    """Latency at one request (each of the first `alone_rows` rows alone) and throughput at full batches, after one
    warm-up call."""
    generate(rows[:1])
    alone = []
    for row in rows[:alone_rows]:
        start = time.perf_counter()
        generate([row])
        alone.append(time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        generate(rows[i:i + batch_size])
    per_second = len(rows) / (time.perf_counter() - start)
    return {"latency_p50_seconds": float(np.percentile(alone, 50)),
            "latency_p95_seconds": float(np.percentile(alone, 95)), "summaries_per_second": per_second,
            "seconds_per_1000": 1000 / per_second, "weights_bytes": int(weights), "device": device}


def torch_generate(model, tokenizer, max_new_tokens: int, adapter: str = "") -> Generate:
    """Greedy generate on padded rows; `adapter`: the mixed-batch path (peft's adapter_names, one per row)."""
    device = next(model.parameters()).device

    @torch.inference_mode()
    def run(rows):
        batch = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(device)
        names = {"adapter_names": [adapter] * len(rows)} if adapter else {}
        return model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, **names)
    return run


def int8_generate(run_dir: Path, base_path: str, name: str, tokenizer, max_new_tokens: int) -> tuple[Generate, int]:
    folder = int8.convert(run_dir, base_path, name, tokenizer, True)
    translator, vocab = int8.load_translator(folder), int8.Vocabulary.of(tokenizer)
    size = sum(f.stat().st_size for f in folder.rglob("*.bin"))
    return (lambda rows: int8.generate(translator, vocab, rows, max_new_tokens)), size


def exact_form(loaded, name: str, adapter_bytes: int, max_new_tokens: int) -> tuple[Generate, int, str]:
    """(generate, weights held, how) of the model as the app serves it exactly; an adapter holds the shared base
    and its own `adapter_bytes`."""
    tokenizer = loaded.tokenizer
    base_bytes = weight_bytes(loaded.base) if loaded.base is not None else 0
    if name == BASE:
        return torch_generate(loaded.base, tokenizer, max_new_tokens), base_bytes, "the base as it is"
    model = loaded.model_for(name)
    if not hasattr(model, "peft_config"):
        return torch_generate(model, tokenizer, max_new_tokens), weight_bytes(model), "its own weights"
    if loaded.in_mixed_batch(name):
        how = "adapter on the shared base, in a mixed batch (adapter_names)"
        return torch_generate(model, tokenizer, max_new_tokens, adapter=name), base_bytes + adapter_bytes, how
    return torch_generate(model, tokenizer, max_new_tokens), base_bytes + adapter_bytes, \
        "adapter on the shared base, alone"


def forms_of(run_dir: Path, name: str, merges: bool) -> list[str]:
    """The forms a model can be served in: merging applies to adapters only; int8 to whatever can be merged."""
    adapter = name != BASE and not (run_dir / name / "model").is_dir()
    return [EXACT, *([MERGED] if adapter and merges else []), *([INT8] if merges else [])]


def measure(cfg: ServingConfig) -> dict:
    run_dir = Path(cfg.run)
    read_run_file(run_dir, RUN_JSON)
    evaluation, rows = read_evaluation(run_dir)
    decoding = evaluation["decoding"]
    prompts = [format_prompt(r["dialogue"], decoding["prompt_template"]) for r in rows[:cfg.dialogues]]
    loaded = load_run_models(run_dir)
    tokenizer = loaded.tokenizer
    ids = tokenizer(prompts, truncation=True, max_length=decoding["max_source_length"])["input_ids"]
    steps = decoding["max_new_tokens"]
    alone = min(cfg.latency_requests or len(ids), len(ids))
    models, not_served = {}, {}
    for name in [n for n in evaluation["models"] if loaded.available(n)]:
        info = {} if name == BASE else read_run_file(run_dir, method_metrics(name))
        merges = name == BASE or info["method"]["merges"]
        adapter_bytes = info.get("parameters", {}).get("trainable", 0) * torch.finfo(loaded.dtype).bits // 8
        forms = {}
        for form in forms_of(run_dir, name, merges):
            if form == EXACT:
                generate, size, how = exact_form(loaded, name, adapter_bytes, steps)
                forms[form] = {**measured(generate, ids, cfg.batch_size, alone, device_name(), size), "how": how}
            elif form == MERGED:
                model = int8.merged_model(run_dir, loaded.base_path, name, True).to(loaded.device).eval()
                generate, how = torch_generate(model, tokenizer, steps), "adapter folded into a copy of the base"
                forms[form] = {**measured(generate, ids, cfg.batch_size, alone, device_name(), weight_bytes(model)),
                               "how": how}
                del model
            else:
                generate, size = int8_generate(run_dir, loaded.base_path, name, tokenizer, steps)
                forms[form] = {**measured(generate, ids, cfg.batch_size, alone, CPU, size),
                               "how": "merged, CTranslate2 int8 on the CPU"}
            print(f"serving {name} ({form}): {forms[form]['seconds_per_1000']:,.1f} s per 1,000 summaries, "
                  f"p95 {forms[form]['latency_p95_seconds']:.3f} s at one request", flush=True)
        models[name] = forms
        if not merges:
            not_served[name] = "peft cannot merge it: no merged or int8 form"
    doc = {"schema_version": 1, "created_at": utc_now(), "evaluation_created_at": evaluation["created_at"],
           "device": device_name(), "n_dialogues": len(ids), "latency_requests": alone, "batch_size": cfg.batch_size,
           "decoding": decoding,
           "models": models, "not_served": not_served}
    write_run_file(run_dir, EVAL_SERVING, doc)
    print(f"wrote {run_dir / EVAL_SERVING}")
    return doc


def measure_if_stale(run_dir: Path, dialogues: int) -> None:
    """After a training command's evaluation: measure on `dialogues` test dialogues (half of them timed alone)
    unless eval/serving.json matches the evaluation already; 0: not at all."""
    if dialogues == 0:
        return
    evaluation, _ = read_evaluation(run_dir)
    if (run_dir / EVAL_SERVING).exists():
        if read_run_file(run_dir, EVAL_SERVING)["evaluation_created_at"] == evaluation["created_at"]:
            print(f"--resume: {run_dir / EVAL_SERVING} is current; skipping the serving measurements.", flush=True)
            return
    print("measuring the serving cost of every model in each form it supports", flush=True)
    measure(ServingConfig(run=str(run_dir), dialogues=dialogues, latency_requests=max(1, dialogues // 2)))


def main(argv=None) -> None:
    def measure_run():
        cfg = parse_options(ServingConfig, argv, __doc__)
        check_counts(cfg, ("dialogues", "batch_size"))
        if cfg.latency_requests < 0:
            raise ConfigError(f"--latency_requests must be 0 (every dialogue) or more (got {cfg.latency_requests})")
        return measure(cfg)

    run_cli(measure_run)


if __name__ == "__main__":
    main()
