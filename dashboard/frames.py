"""The run's numbers as the frames, tables and sentences the Metrics tab and the charts draw: pure functions of
a RunData (dashboard/run_data.py), like peft's method_comparison builds one frame and draws from it."""

import math
from typing import Optional

import pandas as pd

from contract.untrusted import plain
from dashboard.run_data import LAB_LABEL, LAB_REFERENCE, METRIC_LABELS, RunData


def rouge_frame(evaluation: Optional[dict], protocol: Optional[str] = None, with_lab: bool = True) -> pd.DataFrame:
    """model, metric, mean, ci_low, ci_high, series, seeds: this run's scores (seeds: each seed's mean, for a
    method trained with several) and (optionally) the lab's published ones."""
    rows = []
    if evaluation:
        protocol = protocol or evaluation["headline_protocol"]
        for model, metrics in evaluation["scores"][protocol].items():
            for metric, s in metrics.items():
                rows.append({"model": model, "metric": metric, **s, "seeds": s.get("seeds"), "series": "This run"})
    if with_lab:
        for model, values in LAB_REFERENCE.items():
            for metric, value in zip(METRIC_LABELS, values):
                rows.append({"model": model, "metric": metric, "mean": value, "ci_low": None, "ci_high": None,
                             "series": LAB_LABEL})
    return pd.DataFrame(rows, columns=["model", "metric", "mean", "ci_low", "ci_high", "series", "seeds"])


def comparisons_table(evaluation: Optional[dict]) -> pd.DataFrame:
    """Paired tests of the headline protocol, one row per (pair, metric), raw and Holm-adjusted p."""
    if not evaluation:
        return pd.DataFrame()
    rows = evaluation["comparisons"][evaluation["headline_protocol"]]
    return pd.DataFrame([{"comparison": f"{c['a']} − {c['b']}", "metric": METRIC_LABELS.get(c["metric"]),
                          "mean difference": round(c["mean_difference"], 4), "p-value": round(c["p_value"], 4),
                          "p (Holm, all pairs)": round(c["p_holm"], 4)}
                         for c in rows])


def ranking_table(data: "RunData") -> pd.DataFrame:
    """One row per model, most likely best first: P(best) (= P(rank 1)), then P(rank k) for each further rank, and
    whether it is tied at the top (its interval overlaps the best's); two decimals, as the sentence above it.
    Empty when the evaluation has no ranking."""
    ranking = (data.evaluation or {}).get("ranking")
    if not ranking:
        return pd.DataFrame()
    order = sorted(ranking["p_rank"], key=lambda m: [-p for p in ranking["p_rank"][m]])
    return pd.DataFrame([{"model": data.label(m), "P(best)": round(ranking["p_best"][m], 2),
                          **{f"P(rank {k})": round(p, 2) for k, p in enumerate(ranking["p_rank"][m], 1) if k > 1},
                          "tied at the top": "yes" if m in ranking["tied_at_top"] else ""} for m in order])


def ranking_sentence(data: "RunData") -> str:
    """"LoRA is best with probability 0.62, Full fine-tune 0.35; tied at the top: ..." in one line."""
    ranking = (data.evaluation or {}).get("ranking")
    if not ranking:
        return ""
    likely = sorted(ranking["p_best"].items(), key=lambda kv: -kv[1])
    first, *rest = [(data.label(m), p) for m, p in likely if p >= 0.01] or [(data.label(likely[0][0]), likely[0][1])]
    tied = [data.label(m) for m in ranking["tied_at_top"]]
    return (f"**How sure the ranking is** ({METRIC_LABELS.get(ranking['metric'], ranking['metric'])}, "
            f"{ranking['resamples']} resamples of seeds and dialogues): **{first[0]} is best with probability "
            f"{first[1]:.2f}**" + "".join(f", {name} {p:.2f}" for name, p in rest[:4]) + ". "
            + (f"Tied at the top (95% intervals overlap the best's): {', '.join(tied)}." if len(tied) > 1 else
               "No other model's interval reaches the best's."))


def parameters_frame(train: dict) -> pd.DataFrame:
    return pd.DataFrame([{"method": k, "total": m["parameters"]["total"], "trainable": m["parameters"]["trainable"],
                          "trainable_percent": m["parameters"]["trainable_percent"]} for k, m in train.items()])


# What a method's training cost counts: training it once at its rate, or that plus the trials of its learning-rate
# sweep (what finding a rate that works cost). Methods trained without a sweep cost the same either way.
COST_BASES = {"one training at its rate": False, "including its learning-rate sweep": True}


def sweep_seconds(metrics: dict, with_sweep: bool) -> float:
    return metrics["cost"].get("sweep_seconds", 0.0) if with_sweep else 0.0


def cost_frame(train: dict, with_sweep: bool = False) -> pd.DataFrame:
    """Per method: its training cost figures; `with_sweep`: training and wall seconds include its sweep."""
    return pd.DataFrame([{"method": k, **{c: m["cost"][c] for c in (
        "examples_per_second", "tokens_per_second", "peak_memory_bytes", "checkpoint_bytes")},
        **{c: m["cost"][c] + sweep_seconds(m, with_sweep) for c in ("wall_seconds", "train_seconds")},
        "peak_memory_measure": m["cost"]["peak_memory_measure"], "device": m["cost"]["device"]}
        for k, m in train.items()])


def loss_frame(train: dict) -> pd.DataFrame:
    """Long format: method, step, split ('train'/'eval'), loss."""
    rows = [
        {"method": k, "step": r["step"], "split": split, "loss": r[f"{split}_loss"]}
        for k, m in train.items()
        for r in m["loss_history"]
        for split in ("train", "eval")
        if f"{split}_loss" in r
    ]
    return pd.DataFrame(rows, columns=["method", "step", "split", "loss"]).drop_duplicates()


TRADEOFF_COLUMNS = ["method", "rouge1", "ci_low", "ci_high", "trainable", "train_seconds", "peak_memory_bytes",
                    "checkpoint_bytes"]


def tradeoff_frame(data: RunData, with_sweep: bool = False) -> pd.DataFrame:
    """Per method: ROUGE-1 (headline protocol, with CI) and its four costs, for the cost-vs-quality frontiers;
    `with_sweep`: training time includes the method's learning-rate sweep."""
    if not data.evaluation:
        return pd.DataFrame(columns=TRADEOFF_COLUMNS)
    scores = data.evaluation["scores"][data.evaluation["headline_protocol"]]
    return pd.DataFrame([{"method": k, "rouge1": scores[k]["rouge1"]["mean"], "ci_low": scores[k]["rouge1"]["ci_low"],
                          "ci_high": scores[k]["rouge1"]["ci_high"], "trainable": m["parameters"]["trainable"],
                          **{c: m["cost"][c] for c in TRADEOFF_COLUMNS[5:]},
                          "train_seconds": m["cost"]["train_seconds"] + sweep_seconds(m, with_sweep)}
                         for k, m in data.train.items() if k in scores], columns=TRADEOFF_COLUMNS)


TUNING_COLUMNS = ["method", "learning_rate", "step", "loss", "rougeL", "status", "default", "chosen", "note"]


def retention_frame(data: RunData) -> pd.DataFrame:
    """Per method: the ROUGE-1 it gained over the base and the retention loss it took on (change in loss on the
    base's own earlier task, 95% CI; positive = forgetting). Empty without a retention measurement."""
    kept = (data.evaluation or {}).get("retention")
    if not kept:
        return pd.DataFrame()
    scores = data.evaluation["scores"][data.evaluation["headline_protocol"]]
    base = scores["base"]["rouge1"]["mean"]
    rows = [{"method": m, "gain": scores[m]["rouge1"]["mean"] - base, "change": r["change"], "ci_low": r["ci_low"],
             "ci_high": r["ci_high"]}
            for m, r in kept["models"].items() if m != "base" and m in scores and r["change"] is not None]
    return pd.DataFrame(rows)


def tuning_frame(data: RunData) -> pd.DataFrame:
    """One row per scored leg of each sweep (its rate, the step it was scored at, validation loss, and ROUGE-L at
    the end; whether the rate is the method's default or the chosen one), and one per rate that never gave a
    score (why not)."""
    rows = []
    for m, s in data.sweeps.items():
        for t in s["trials"]:
            marks = {"method": m, "learning_rate": t["learning_rate"], "status": t["status"],
                     "default": math.isclose(t["learning_rate"], s["default_learning_rate"], rel_tol=1e-4),
                     "chosen": t["learning_rate"] == s["chosen_learning_rate"]}
            scored = [leg for leg in t["legs"] if leg["status"] == "complete"]
            rows += [{**marks, "step": leg["step"], "loss": leg["loss"], "rougeL": leg["rougeL"], "note": ""}
                     for leg in scored]
            if not scored:
                rows.append({**marks, "step": None, "loss": None, "rougeL": None,
                             "note": t.get("pruned") or t.get("error") or t.get("stopped", "")})
    return pd.DataFrame(rows, columns=TUNING_COLUMNS)


def rate_line(metrics: dict) -> str:
    """How a method's learning rate was set, for tables: "0.01 (swept)" / "0.003 (preset)"."""
    rate = metrics.get("learning_rate") or {
        "value": metrics["hyperparameters"].get("learning_rate"),
        "source": "preset",
    }
    if rate["value"] is None:  # not recorded (a hand-made or very old metrics.json)
        return "-"
    swept = ("swept: none beat the untrained model, the preset rate" if rate.get("below_untrained") else
             "swept" + ("" if rate.get("bracketed", True) else ", at the grid's edge"))
    mark = swept if rate["source"] == "sweep" else rate["source"]
    return f"{rate['value']:.3g} ({mark})"


def length_cell(length: Optional[dict]) -> str:
    """"23.4 (+0.012)": mean summary tokens, and how per-row ROUGE-1 moves per 10 more tokens."""
    if not length:
        return "-"
    slope = length["rouge1_per_10_tokens"]
    return f"{length['mean_tokens']:.1f}" + (f" ({slope:+.3f})" if slope is not None else "")


def forgetting_cell(kept: Optional[dict]) -> str:
    if not kept or kept["change"] is None:
        return "-"
    return f"{kept['change']:+.3f} [{kept['ci_low']:+.3f}, {kept['ci_high']:+.3f}]"


def summary_table(data: RunData) -> pd.DataFrame:
    """One row per model: the headline ROUGE with CIs, parameters and cost, for the table under the charts."""
    rows = []
    scores = data.evaluation["scores"][data.evaluation["headline_protocol"]] if data.evaluation else {}
    lengths = (data.evaluation or {}).get("summary_length", {})
    kept = ((data.evaluation or {}).get("retention") or {}).get("models", {})
    for model in data.models:
        row = {"model": data.label(model)}
        for metric, label in METRIC_LABELS.items():
            s = scores.get(model, {}).get(metric)
            row[label] = f"{s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]" if s else "-"
        train = data.train.get(model)
        row["trainable params"] = f"{train['parameters']['trainable']:,}" if train else "-"
        row["learning rate"] = rate_line(train) if train else "-"
        row["seeds"] = 1 + len(train.get("seeds", [])) if train else "-"
        row["train time (s)"] = f"{train['cost']['train_seconds']:.1f}" if train else "-"
        row["peak memory (MiB)"] = f"{train['cost']['peak_memory_bytes'] / 2**20:,.0f}" if train else "-"
        row["checkpoint (MiB)"] = f"{train['cost']['checkpoint_bytes'] / 2**20:,.2f}" if train else "-"
        row["summary tokens (ROUGE-1 per 10 more)"] = length_cell(lengths.get(model))
        row["forgetting: Δ loss [95% CI]"] = forgetting_cell(kept.get(model))
        rows.append(row)
    return pd.DataFrame(rows)


def int8_table(data: RunData) -> pd.DataFrame:
    """One row per model: ROUGE-1 exact and int8 on the evaluation's dialogues, the difference [95% CI], |diff|,
    the share of identical summaries; models with no int8 form say so."""
    figures_ = (data.int8 or {}).get("models", {})
    rows = [{"model": data.label(m), "ROUGE-1 exact": round(f["exact_rouge1"], 4),
             "ROUGE-1 int8": round(f["int8_rouge1"], 4),
             "int8 − exact [95% CI]": f"{f['delta_rouge1']['mean']:+.4f} [{f['delta_rouge1']['ci_low']:+.4f}, "
                                      f"{f['delta_rouge1']['ci_high']:+.4f}]",
             "|Δ ROUGE-1|": round(abs(f["delta_rouge1"]["mean"]), 4),
             "identical summaries": f"{f['identical_share']:.0%}"} for m, f in figures_.items()]
    rows += [
        {
            "model": data.label(m),
            "ROUGE-1 exact": None,
            "ROUGE-1 int8": None,
            "int8 − exact [95% CI]": why,
            "|Δ ROUGE-1|": None,
            "identical summaries": "",
        }
        for m, why in (data.int8 or {}).get("exact_only", {}).items()
    ]
    return pd.DataFrame(rows)


def int8_line(data: RunData) -> str:
    """What the int8 table is, or how to measure it; stale figures are said to be."""
    measure = f"`python -m training.int8_quality --run` on this run's folder ({plain(data.folder.name)})"
    if data.int8 is None:
        return (f"**int8 (CTranslate2) vs exact:** not measured for this run: {measure} writes it (`python app.py "
                "--backend int8` serves in int8).")
    stale = data.evaluation is not None and data.int8["evaluation_created_at"] != data.evaluation["created_at"]
    return (f"**int8 (CTranslate2) vs exact** on the same {data.int8['n_dialogues']} test dialogues and decoding "
            f"({data.int8['engine']}, {data.int8['quantization']}; each model merged first; per-row ROUGE-1, the "
            "difference's interval a paired bootstrap over dialogues)."
            + (f" ⚠️ **Stale**: measured against an earlier evaluation; run {measure} again." if stale else ""))


SLICE_KINDS = {"length": "Dialogue length", "speakers": "Speakers", "topic": "Topic"}
FAILURE_MEASURES = {("unsupported_details", "share"): "has an unsupported detail",
                    ("degenerate_outputs", "repetition"): "repeats itself",
                    ("degenerate_outputs", "empty"): "is empty"}


def slices_frame(evaluation: Optional[dict]) -> pd.DataFrame:
    """kind, slice, n, wide, model, mean, ci_low, ci_high: ROUGE-1 by slice of the test set."""
    columns = ["kind", "slice", "n", "wide", "model", "mean", "ci_low", "ci_high"]
    rows = [{"kind": kind, "slice": s["slice"], "n": s["n"], "wide": s["wide"], "model": model, **score}
            for kind, items in ((evaluation or {}).get("slices") or {}).items() for s in items
            for model, score in s["scores"].items()]
    return pd.DataFrame(rows, columns=columns)


def failures_frame(evaluation: Optional[dict]) -> pd.DataFrame:
    """model, measure, mean, ci_low, ci_high: the share of summaries with each kind of failure."""
    rows = [{"model": model, "measure": label, **figures[key]}
            for (section, key), label in FAILURE_MEASURES.items()
            for model, figures in ((evaluation or {}).get(section) or {}).items()]
    return pd.DataFrame(rows, columns=["model", "measure", "mean", "ci_low", "ci_high"])


CAPABILITY_VIEWS = {"all, fewest trainable parameters first": None, "can be merged into the base": "merges",
                    "served in one mixed batch": "mixed batch"}


def capability_frame(data: RunData, view: str = "all, fewest trainable parameters first") -> pd.DataFrame:
    """The run's methods as a shop window: what trains, trainable parameters, how each is served, whether it
    merges into the base, the paper (from each method's metrics.json: the registry's own words)."""
    rows = []
    for name, metrics in data.train.items():
        method = metrics["method"]
        rows.append({"method": data.label(name), "what trains": method.get("what_trains", ""),
                     "trainable": metrics["parameters"]["trainable"],
                     "mixed batch": method["mixed_batch"], "merges": method["merges"],
                     "paper": method.get("paper", "")})
    frame = pd.DataFrame(rows, columns=["method", "what trains", "trainable", "mixed batch", "merges", "paper"])
    key = CAPABILITY_VIEWS[view]
    if key:
        frame = frame[frame[key] == True]  # noqa: E712  (None = not recorded: left out of a filtered view)
    return frame.sort_values("trainable", kind="stable").reset_index(drop=True)
