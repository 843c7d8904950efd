"""What int8 costs in quality: each model of an evaluated run summarizes the run's test dialogues again through
CTranslate2 in int8 (contract/int8.py: merged, converted once, cached), with the evaluation's own decoding (greedy,
its prompt, input length and summary length), and is scored with the evaluation's ROUGE (per-row protocol) against
the exact summaries the evaluation stored: ROUGE-1 exact and int8, their difference with a 95% paired bootstrap
interval over dialogues, and the share of summaries that are identical. Written to <run>/eval/int8.json (the app's
Metrics tab shows it beside the exact figures); models peft cannot merge are listed with the reason.

    python -m training.int8_quality --run artifacts/tiny
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoTokenizer

from contract import int8
from contract.files import (
    EVAL_INT8,
    RUN_JSON,
    base_model_location,
    method_metrics,
    read_evaluation,
    read_run_file,
    tokenizer_location,
    write_run_file,
)
from contract.protocol import BASE
from scoring.rouge import load_rouge_metric, score_dialogues
from scoring.stats import bootstrap_ci
from training.cli import run_cli
from training.config import check_counts, parse_options
from training.data import format_prompt
from training.provenance import utc_now


@dataclass
class Int8Config:
    run: str = field(metadata={"help": "An evaluated run folder (python -m training.evaluate --run ... first)."})
    batch_size: int = field(default=16, metadata={"help": "Dialogues per CTranslate2 call."})
    resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples of the difference's interval."})


def int8_outputs(run_dir: Path, model: str, base_path: str, tokenizer, mergeable: bool, prompts: list[str],
                 decoding: dict, batch_size: int) -> tuple[list[str], float]:
    """The model's int8 summaries of `prompts`, and the seconds they took."""
    translator = int8.load_translator(int8.convert(run_dir, base_path, model, tokenizer, mergeable))
    vocab = int8.Vocabulary.of(tokenizer)
    ids = tokenizer(prompts, truncation=True, max_length=decoding["max_source_length"])["input_ids"]
    start, texts = time.perf_counter(), []
    for i in range(0, len(ids), batch_size):
        out = int8.generate(translator, vocab, ids[i:i + batch_size], decoding["max_new_tokens"],
                            decoding.get("num_beams", 1))
        texts += [tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]
    return texts, time.perf_counter() - start


def compare(dialogues: pd.DataFrame, exact: list[str], quantized: list[str], rouge, resamples: int) -> dict:
    """ROUGE-1 exact vs int8 (per-row protocol), the paired difference with its interval, identical share."""
    scores = score_dialogues(dialogues, {"exact": exact, "int8": quantized}, rouge)["per_row"]
    weights = [len(r) for r in dialogues["references"]]
    a, b = np.asarray(scores["exact"]["rouge1"]), np.asarray(scores["int8"]["rouge1"])
    mean, low, high = bootstrap_ci(b - a, weights, resamples)
    return {
        "exact_rouge1": float(np.average(a, weights=weights)),
        "int8_rouge1": float(np.average(b, weights=weights)),
        "delta_rouge1": {"mean": mean, "ci_low": low, "ci_high": high},
        "identical_share": float(np.mean([x == y for x, y in zip(exact, quantized)])),
    }


def measure(cfg: Int8Config) -> dict:
    run_dir = Path(cfg.run)
    run = read_run_file(run_dir, RUN_JSON)
    evaluation, rows = read_evaluation(run_dir)
    decoding = evaluation["decoding"]
    dialogues = pd.DataFrame(
        {"dialogue": [r["dialogue"] for r in rows], "references": [r["references"] for r in rows]}
    )
    prompts = [format_prompt(d, decoding["prompt_template"]) for d in dialogues["dialogue"]]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_location(run_dir, run))
    base_path, rouge = base_model_location(run_dir, run), load_rouge_metric()
    models, exact_only = {}, {}
    for model in evaluation["models"]:
        merges = model == BASE or read_run_file(run_dir, method_metrics(model))["method"]["merges"]
        if not merges:
            exact_only[model] = "peft cannot merge it into the base: served exactly"
            continue
        texts, seconds = int8_outputs(run_dir, model, base_path, tokenizer, merges, prompts, decoding, cfg.batch_size)
        models[model] = {**compare(dialogues, [r["outputs"][model] for r in rows], texts, rouge, cfg.resamples),
                         "int8_seconds": seconds}
        print(f"int8 {model}: ROUGE-1 {models[model]['exact_rouge1']:.4f} exact, {models[model]['int8_rouge1']:.4f} "
              f"int8, {models[model]['identical_share']:.0%} identical", flush=True)
    import ctranslate2

    doc = {"schema_version": 1, "created_at": utc_now(), "evaluation_created_at": evaluation["created_at"],
           "engine": f"ctranslate2 {ctranslate2.__version__}", "quantization": int8.QUANTIZATION,
           "n_dialogues": len(rows), "protocol": "per_row", "decoding": decoding, "models": models,
           "exact_only": exact_only}
    write_run_file(run_dir, EVAL_INT8, doc)
    print(f"wrote {run_dir / EVAL_INT8}")
    return doc


def main(argv=None) -> None:
    def measure_run():
        cfg = parse_options(Int8Config, argv, __doc__)
        check_counts(cfg, ("batch_size", "resamples"))
        return measure(cfg)

    run_cli(measure_run)


if __name__ == "__main__":
    main()
