"""Evaluate base and every method of a run on the test split: greedy summaries, ROUGE under two protocols,
bootstrap CIs and paired tests over all pairs (Holm-adjusted). Models are loaded exactly as the app serves them
(contract/loading.py): the base weights once, adapters on them, full fine-tunes on their own.

    python -m training.evaluate --run artifacts/tiny
    python -m training.evaluate --run artifacts/flan-t5-base --limit 100      # a quick look

Writes <run>/eval/metrics.json and <run>/eval/predictions.jsonl and prints a model x metric table.
Protocols: per_row (the headline: every (dialogue, reference) row against its own reference, averaged over rows,
as the lab's published figures) and multi_reference (each dialogue against all its references, best match).
"""

import itertools
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from contract.files import (
    EVAL,
    EVAL_METRICS,
    EVAL_PREDICTIONS,
    RUN_JSON,
    method_metrics,
    read_run_file,
    save_folder_atomically,
    schema_for,
    write_json,
)
from contract.loading import load_alone, load_run_models
from contract.protocol import BASE, BASE_LABEL, DEFAULT_PROMPT, MAX_NEW_TOKENS, MAX_SOURCE_TOKENS, prompt_problem
from scoring import lenses
from scoring.rouge import METRICS, PROTOCOLS, ROUGE_METRIC, Rouge, load_rouge_metric, model_scores, references_of
from scoring.stats import (
    bootstrap_ci_seeds,
    dialogues_needed,
    frontier_probabilities,
    holm_adjust,
    paired_permutation_test,
    rank_probabilities,
    weighted_mean,
)
from training import retention, shards
from training.cli import run_cli
from training.config import ConfigError, check_counts, eval_limit_of, parse_options
from training.data import first_dialogues, format_prompt
from training.generation import EVAL_BATCH_SIZE, GREEDY, generate, length_order
from training.provenance import device_name, package_versions, peak_memory, source, utc_now
from training.run_folder import one_writer


@dataclass
class EvalConfig:
    run: str = field(default="artifacts/tiny", metadata={"help": "Run folder (run.json and one folder per method)."})
    data: Optional[str] = field(default=None, metadata={"help": "Data source. Default: the run's (run.json)."})
    split: str = field(default="test", metadata={"help": "Split to evaluate.", "choices": ["test", "validation"]})
    limit: Optional[int] = field(default=None, metadata={"help": "Evaluate only the first N dialogues."})
    batch_size: int = field(default=EVAL_BATCH_SIZE, metadata={"help": "Generation batch (inputs sorted by length)."})
    max_new_tokens: int = field(default=MAX_NEW_TOKENS, metadata={"help": "Summary length cap (the lab's)."})
    max_source_length: int = field(default=MAX_SOURCE_TOKENS, metadata={"help": "Input tokens kept, as in training."})
    prompt_template: str = field(default=DEFAULT_PROMPT, metadata={"help": "Prompt with {dialogue}."})
    resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples over dialogues (>= 1000)."})
    permutations: int = field(default=10000, metadata={"help": "Sign-flip permutations for the paired tests."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and permutation draws."})
    retention_data: str = field(default="hub", metadata={
        "help": "Held-out general text for the retention score of real presets (T5 span corruption): 'hub' "
                "(allenai/c4 English validation, streamed), 'none' (skip it), or a .txt / .jsonl file. The tiny "
                "preset measures its own copy pre-training on the test dialogues instead (training/retention.py)."})
    headline: str = field(default="per_row", metadata={"help": "Protocol shown first.",
                                                       "choices": list(PROTOCOLS)})


def timed_generation(model, tokenizer, prompts, cfg: EvalConfig, desc: str):
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, cfg.batch_size, cfg.max_new_tokens, cfg.max_source_length, desc)
    seconds = time.perf_counter() - start
    peak, measure = peak_memory()
    return outputs, {"seconds": seconds, "examples_per_second": len(prompts) / seconds, "peak_memory_bytes": int(peak),
                     "peak_memory_measure": measure, "device": device_name()}


def evaluation_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def generate_all(run_dir: Path, prompts: list[str], references: list[list[str]], cfg: EvalConfig):
    """Every available model's summaries and generation cost (a model whose shards are current: read from them,
    with their scores where they hold them for these `references`); unavailable ones are named and left out."""
    loaded = load_run_models(run_dir, evaluation_device())
    for name, why in loaded.errors.items():
        print(f"evaluation: {name} is left out: {why}")
    outputs, cost, from_shards = {}, {}, {}
    for name in [n for n in loaded.models if loaded.available(n)]:
        from_shards[name] = shards.read_shards(run_dir, name, prompts, shard_keys(run_dir, loaded, name, cfg),
                                               references)
        if from_shards[name] is not None:
            scored = " with their scores" if from_shards[name]["scores"] else ""
            print(f"evaluation: {name}'s summaries come from its shards ({shards.SHARDS}/{name}/){scored}", flush=True)
            outputs[name], cost[name] = from_shards[name]["outputs"], from_shards[name]["cost"]
        else:
            outputs[name], cost[name] = timed_generation(loaded.model_for(name), loaded.tokenizer, prompts, cfg, name)
    return outputs, cost, loaded, from_shards


def shard_keys(run_dir: Path, loaded, name: str, cfg: EvalConfig):
    return shards.key_maker(run_dir, loaded, name, [cfg.batch_size, cfg.max_new_tokens, cfg.max_source_length])


def generate_shard(cfg: EvalConfig, name: str, block: int = 0, dialogues_per_job: Optional[int] = None) -> None:
    """One model's summaries (its served seed's and every other seed's) of one block of the test dialogues
    (training/shards.py; one block of all of them when `dialogues_per_job` is None) into its shard: a job of a
    comparison's queue, so the summaries are made on several workers; the evaluation reads them."""
    run_dir = Path(cfg.run)
    dialogues = test_dialogues(cfg, read_run_file(run_dir, RUN_JSON))
    prompts = [format_prompt(d, cfg.prompt_template) for d in dialogues["dialogue"]]
    loaded = load_run_models(run_dir, evaluation_device(), only=[] if name == BASE else [name])
    if not loaded.available(name):
        print(f"evaluation: {name} is left out: {loaded.errors.get(name, 'it is not in the run')}", flush=True)
        return
    size = shards.block_size(dialogues_per_job or len(prompts), cfg.batch_size)
    indices = shards.block_of(length_order(loaded.tokenizer, prompts, cfg.max_source_length), block, size)
    mine = [prompts[i] for i in indices]
    key = shard_keys(run_dir, loaded, name, cfg)(mine)
    if shards.current_shard(run_dir, name, block, key):
        return
    outputs, cost = timed_generation(loaded.model_for(name), loaded.tokenizer, mine, cfg, f"{name} block {block}")
    costs = {name: cost}
    served, seeds = generate_seeds(run_dir, loaded, mine, cfg, costs)
    runs = {str(served.get(name, "-")): outputs, **{str(s): texts for s, texts in seeds.get(name, {}).items()}}
    every_reference = references_of(dialogues)
    references = [every_reference[i] for i in indices]
    rouge = load_rouge_metric()
    shard = {"key": key, "indices": indices, "outputs": outputs, "cost": costs[name],
             "seeds": {str(s): texts for s, texts in seeds.get(name, {}).items()},
             "references": shards.references_key(references),
             "scores": {seed: model_scores(references, texts, rouge) for seed, texts in runs.items()}}
    print(f"wrote {shards.write_shard(run_dir, name, block, shard)}", flush=True)


def generate_seeds(run_dir: Path, loaded, prompts: list[str], cfg: EvalConfig, cost: dict,
                   from_shards: Optional[dict] = None) -> tuple[dict, dict]:
    """(served seed of each method, {method: {seed: summaries}} of the seeds beyond it (--seeds)): each seed's
    model is loaded alone, used, and let go (or its summaries read from the method's shard); the seconds their
    summaries took join the method's `cost` entry."""
    served, seed_outputs = {}, {}
    for name in loaded.methods:
        if not loaded.available(name):
            continue
        info = read_run_file(run_dir, method_metrics(name))
        served[name] = info["seed"]
        if (shard := (from_shards or {}).get(name)) is not None:
            seed_outputs.update({name: {int(s): texts for s, texts in shard["seeds"].items()}} if shard["seeds"]
                                else {})
            continue
        for entry in info.get("seeds", []):
            start = time.perf_counter()
            model = load_alone(loaded, run_dir / name / entry["folder"], bool(info["method"].get("base_quantization")))
            seed_outputs.setdefault(name, {})[entry["seed"]] = generate(
                model, loaded.tokenizer, prompts, cfg.batch_size, cfg.max_new_tokens, cfg.max_source_length,
                f"{name} seed {entry['seed']}")
            del model
            cost[name]["seeds_seconds"] = cost[name].get("seeds_seconds", 0.0) + time.perf_counter() - start
    return served, seed_outputs


def trainable_parameters(run_dir: Path, models: list[str]) -> dict:
    """Each model's trainable parameters (the base: 0), the cost axis of the frontier probabilities."""
    return {m: 0 if m == "base" else read_run_file(run_dir, method_metrics(m))["parameters"]["trainable"]
            for m in models}


def by_seed(references, outputs, served: dict, seed_outputs: dict, rouge, from_shards: Optional[dict] = None) -> dict:
    """{protocol: {model: {metric: {seed: per-dialogue scores}}}}: the served model's seed first (base: "-"); a
    seed's scores read from the model's shards where their jobs scored it, else scored here."""
    scores = {protocol: {} for protocol in PROTOCOLS}
    for model, texts in outputs.items():
        scored = ((from_shards or {}).get(model) or {}).get("scores") or {}
        runs = {str(served.get(model, "-")): texts, **{str(s): t for s, t in seed_outputs.get(model, {}).items()}}
        for seed, seed_texts in runs.items():
            for protocol, metrics in (scored.get(seed) or model_scores(references, seed_texts, rouge)).items():
                for k, v in metrics.items():
                    scores[protocol].setdefault(model, {}).setdefault(k, {})[seed] = v
    return scores


def seed_mean(scores: dict) -> dict:
    """Each dialogue's score averaged over a model's seeds: what the paired tests and slices compare."""
    return {p: {m: {k: np.mean(list(v.values()), axis=0).tolist() for k, v in metrics.items()}
                for m, metrics in by_model.items()} for p, by_model in scores.items()}


def interval(per_seed: dict, weights, cfg: EvalConfig) -> dict:
    """mean [CI] over seeds and dialogues; with several seeds, each seed's own mean under "seeds"."""
    result = dict(zip(("mean", "ci_low", "ci_high"),
                      bootstrap_ci_seeds(list(per_seed.values()), weights, cfg.resamples, cfg.seed)))
    if len(per_seed) > 1:
        result["seeds"] = {s: weighted_mean(v, weights) for s, v in per_seed.items()}
    return result


def summarise(scores, means, weights, cfg: EvalConfig):
    """The table (seed-aware CIs) and every pair's paired test on each dialogue's mean over seeds (`means`)."""
    table, comparisons = {}, {}
    for protocol, by_model in means.items():
        table[protocol] = {m: {k: interval(per_seed, weights, cfg) for k, per_seed in metrics.items()}
                           for m, metrics in scores[protocol].items()}
        rows = [dict(zip(("mean_difference", "p_value"),
                         paired_permutation_test(by_model[a][k], by_model[b][k], weights, cfg.permutations, cfg.seed)),
                     a=a, b=b, metric=k, dialogues_needed=dialogues_needed(
                         np.asarray(by_model[a][k]) - np.asarray(by_model[b][k]), weights))
                for a, b in itertools.combinations(by_model, 2) for k in METRICS]
        for k in METRICS:  # Holm over all pairs, per metric: the family is "which methods differ on this metric"
            family = [r for r in rows if r["metric"] == k]
            for r, adjusted in zip(family, holm_adjust([r["p_value"] for r in family])):
                r["p_holm"] = adjusted
        comparisons[protocol] = rows
    return table, comparisons


def print_table(table, headline):
    print(f"\nROUGE F1 ({headline}; mean [95% CI] over dialogues, and over seeds where a method has several)")
    width = max(6, *(len(m) for m in table[headline]))
    print(f"{'model':{width}}" + "".join(f"{k:>24}" for k in METRICS))
    for model, metrics in table[headline].items():
        cells = [f"{m['mean']:.4f} [{m['ci_low']:.3f},{m['ci_high']:.3f}]" for m in metrics.values()]
        print(f"{model:{width}}" + "".join(f"{c:>24}" for c in cells))


def write_predictions(path: Path, dialogues, outputs, scores, seed_outputs: dict):
    """One line per dialogue: the served models' summaries and scores (what the app shows), and the other seeds'
    summaries under seed_outputs."""
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(dialogues.to_dict("records")):
            line = {
                "id": row["id"], "dialogue": row["dialogue"], "references": row["references"],
                "outputs": {m: outputs[m][i] for m in outputs},
                "rouge": {m: {k: scores["per_row"][m][k][i] for k in METRICS} for m in outputs},
                "rouge_multi_reference": {m: {k: scores["multi_reference"][m][k][i] for k in METRICS}
                                          for m in outputs},
            }
            if seed_outputs:
                line["seed_outputs"] = {
                    m: {str(s): texts[i] for s, texts in seeds.items()} for m, seeds in seed_outputs.items()
                }
            f.write(json.dumps(line) + "\n")


def write_evaluation(run_dir: Path, dialogues, outputs, scores, seed_outputs: dict, metrics: dict) -> None:
    """predictions.jsonl and metrics.json as ONE unit: written into a hidden sibling folder, then swapped in. A
    kill or a full disk at any moment leaves the previous complete evaluation (or none), never a mix."""
    def save(tmp: Path):
        tmp.mkdir(parents=True)
        write_predictions(tmp / Path(EVAL_PREDICTIONS).name, dialogues, outputs, scores, seed_outputs)
        write_json(tmp / Path(EVAL_METRICS).name, metrics, schema_for(EVAL_METRICS))

    save_folder_atomically(run_dir / EVAL, save)


RANKED_BY = "rouge1"  # the ranking's metric: the headline ROUGE-1 (as the page's bars and the Pareto frontiers)


def ranking(seeded: dict, table: dict, weights, trainable: dict, cfg: EvalConfig) -> dict:
    """How sure the ranking is: each model's probability of each rank, of being the best and of being on the
    frontier of trainable parameters against ROUGE-1 (the two-level bootstrap of the intervals, all models drawn
    together), and the models tied at the top (their 95% interval overlaps the best mean's interval)."""
    per_model = {m: list(metrics[RANKED_BY].values()) for m, metrics in seeded[cfg.headline].items()}
    p_rank = rank_probabilities(per_model, weights, cfg.resamples, cfg.seed)
    p_frontier = frontier_probabilities(per_model, trainable, weights, cfg.resamples, cfg.seed)
    scores = table[cfg.headline]
    best = max(scores, key=lambda m: scores[m][RANKED_BY]["mean"])
    tied = [m for m in scores if scores[m][RANKED_BY]["ci_high"] >= scores[best][RANKED_BY]["ci_low"]]
    return {"metric": RANKED_BY, "protocol": cfg.headline, "resamples": cfg.resamples, "p_rank": p_rank,
            "p_best": {m: p[0] for m, p in p_rank.items()}, "best": best, "tied_at_top": tied,
            "p_frontier": p_frontier, "frontier_cost": "trainable parameters"}


def for_training(cfg, run_dir: Path) -> EvalConfig:
    """The evaluation a training command ends with (a TrainConfig `cfg`): the run's prompt and input length, the
    preset's test set size, its retention text."""
    return EvalConfig(run=str(run_dir), prompt_template=cfg.prompt_template, max_source_length=cfg.max_source_length,
                      limit=eval_limit_of(cfg), retention_data=cfg.evaluation.retention_data)


def run(cfg: EvalConfig) -> dict:
    read_run_file(Path(cfg.run), RUN_JSON)  # not a run folder: say so before taking it
    with one_writer(Path(cfg.run)):
        return evaluate(cfg)


def retention_of(run_info: dict, loaded, dialogues: list[str], cfg: EvalConfig) -> Optional[dict]:
    """The retention score (training/retention.py); without models and with the reason (`not_measured`, also said
    in one line) when its text cannot be had; None when --retention_data none."""
    if run_info["preset"] == "tiny":
        sample = dialogues[:retention.RETENTION_TEXTS]
        pairs, task = retention.copy_pairs(sample, loaded.tokenizer), "copy pre-training (dialogue -> its first " \
            f"turn) on {len(sample)} test dialogues"
    elif cfg.retention_data == "none":
        return None
    else:
        try:
            texts, where = retention.web_texts(cfg.retention_data)
        except retention.RetentionDataError:
            raise
        except Exception as e:  # the Hub unreachable (offline) or refusing: the evaluation goes on without it
            why = (f"{where_from(cfg)} cannot be read ({type(e).__name__}); give --retention_data FILE offline, or "
                   "'none'")
            print(f"evaluation: retention skipped: {why}.")
            return {"task": "T5 span corruption", "n_examples": 0, "models": {}, "not_measured": why}
        pairs, task = retention.corruption_pairs(texts, loaded.tokenizer), f"T5 span corruption on {where}"
    return retention.retention(loaded, pairs, task, cfg.resamples, cfg.seed)


def where_from(cfg: EvalConfig) -> str:
    return "allenai/c4" if cfg.retention_data == "hub" else cfg.retention_data


def summary_lengths(outputs: dict, per_row: dict, tokenizer) -> dict:
    """Per model: its summaries' mean length in tokens and how per-row ROUGE-1 moves with length (the least-squares
    slope per 10 tokens; None when every summary has one length): does it score by writing more?"""
    lengths = {}
    for model, texts in outputs.items():
        tokens = np.array([len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]], float)
        rouge1 = np.array(per_row[model]["rouge1"], float)
        slope = float(np.polyfit(tokens, rouge1, 1)[0] * 10) if len(set(tokens)) > 1 else None
        lengths[model] = {"mean_tokens": float(tokens.mean()), "rouge1_per_10_tokens": slope}
    return lengths


def protocol(cfg: EvalConfig, several_seeds: bool) -> dict:
    """How the summaries were generated and scored, and how sure the figures are: decoding, ROUGE, bootstrap."""
    rouge_module = str(ROUGE_METRIC.relative_to(ROUGE_METRIC.parents[1]))
    paired_test = (f"sign-flip permutation over dialogues, {cfg.permutations} draws, two-sided; p_holm: Holm-adjusted "
                   "over all pairs of models, per metric")
    return {
        "decoding": {**GREEDY, "max_new_tokens": cfg.max_new_tokens, "max_source_length": cfg.max_source_length,
                     "batch_size": cfg.batch_size, "prompt_template": cfg.prompt_template},
        "rouge": {**Rouge(split_sentences=True).describe(), "evaluate_module": rouge_module},
        "bootstrap": {"resamples": cfg.resamples, "seed": cfg.seed, "confidence": 0.95,
                      "unit": "seed, then dialogue" if several_seeds else "dialogue", "paired_test": paired_test},
    }


def test_dialogues(cfg: EvalConfig, run_info: dict):
    """The split's dialogues with their references (the first --limit of them)."""
    return first_dialogues(cfg.data or run_info["data_source"], cfg.split, cfg.limit)


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate the run folder of `cfg` (held by this process)."""
    if cfg.resamples < 1000:
        raise ConfigError(f"--resamples {cfg.resamples}: use at least 1000 for a stable 95% interval.")
    run_dir = Path(cfg.run)
    run_info = read_run_file(run_dir, RUN_JSON)
    dialogues = test_dialogues(cfg, run_info)
    prompts = [format_prompt(d, cfg.prompt_template) for d in dialogues["dialogue"]]
    references = references_of(dialogues)
    outputs, cost, loaded, from_shards = generate_all(run_dir, prompts, references, cfg)
    served_seed, seed_outputs = generate_seeds(run_dir, loaded, prompts, cfg, cost, from_shards)
    rouge = load_rouge_metric()
    seeded = by_seed(references, outputs, served_seed, seed_outputs, rouge, from_shards)
    scores = {
        p: {m: {k: v[str(served_seed.get(m, "-"))] for k, v in metrics.items()} for m, metrics in by_model.items()}
        for p, by_model in seeded.items()
    }  # the served models' own scores, as predictions.jsonl holds them
    weights = [len(r) for r in dialogues["references"]]
    means = seed_mean(seeded)
    table, comparisons = summarise(seeded, means, weights, cfg)
    lengths = [len(ids) for ids in loaded.tokenizer(list(dialogues["dialogue"]))["input_ids"]]
    features = [lenses.dialogue_features(d, n, t) for d, n, t in zip(dialogues["dialogue"], lengths,
                                                                       dialogues["topic"])]
    texts = list(dialogues["dialogue"])
    kept = retention_of(run_info, loaded, texts, cfg)
    rouge1_means = {m: s["rouge1"] for m, s in means["per_row"].items()}
    trainable = trainable_parameters(run_dir, list(outputs))
    metrics = {
        "schema_version": 1, "created_at": utc_now(), "split": cfg.split, "headline_protocol": cfg.headline,
        "n_dialogues": len(dialogues), "n_references": int(sum(weights)),
        **protocol(cfg, bool(seed_outputs)),
        "models": list(outputs), "labels": {m: loaded.labels.get(m, BASE_LABEL) for m in outputs},
        "seeds": {m: {"served": seed, "all": [seed, *seed_outputs.get(m, {})]} for m, seed in served_seed.items()},
        "scores": table, "comparisons": comparisons, "ranking": ranking(seeded, table, weights, trainable, cfg),
        "generation_cost": cost,
        "slices": lenses.slices(features, rouge1_means, weights, cfg.resamples, cfg.seed),
        "unsupported_details": lenses.faithfulness(texts, outputs, cfg.resamples, cfg.seed),
        "degenerate_outputs": lenses.degeneracy(outputs, references, cfg.resamples, cfg.seed),
        "versions": package_versions(),
        "source": source(),
        "summary_length": summary_lengths(outputs, scores["per_row"], loaded.tokenizer),
        **({"retention": kept} if kept else {}),
    }
    write_evaluation(run_dir, dialogues, outputs, scores, seed_outputs, metrics)
    shutil.rmtree(run_dir / shards.SHARDS, ignore_errors=True)  # read into the evaluation: no longer needed
    print_table(table, cfg.headline)
    print(f"wrote {run_dir / EVAL_METRICS} and {run_dir / EVAL_PREDICTIONS}")
    return metrics


def main(argv=None) -> None:
    def evaluate_run():
        cfg = parse_options(EvalConfig, argv, __doc__)
        check_counts(cfg, ("batch_size", "max_new_tokens", "resamples", "permutations"), optional=("limit",))
        if not 0 < cfg.max_source_length <= MAX_SOURCE_TOKENS:
            raise ConfigError(f"--max_source_length must be in 1..{MAX_SOURCE_TOKENS} (got {cfg.max_source_length})")
        if problem := prompt_problem(cfg.prompt_template):
            raise ConfigError(f"--prompt_template {cfg.prompt_template[:60]!r}: {problem}")
        retention.check_retention_data(cfg.retention_data)
        return run(cfg)

    run_cli(evaluate_run)


if __name__ == "__main__":
    main()
