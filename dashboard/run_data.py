"""A run folder read into pandas frames for the charts and tables. Reads only the artifacts contract."""

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from contract.files import (
    EVAL_INT8,
    EVAL_METRICS,
    EVAL_SERVING,
    RUN_JSON,
    SWEEP_JSON,
    ArtifactError,
    has_trained,
    is_finished,
    list_methods,
    method_metrics,
    read_evaluation,
    read_run_file,
    without_paths,
)
from contract.protocol import BASE, BASE_LABEL, DEFAULT_PROMPT
from contract.untrusted import plain
from scoring import lenses  # the evaluation's detectors: the same words flagged here as counted there

METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
# The original lab's published figures on the full DialogSum test set (1,500 rows, rouge_score with stemmer,
# each row against its own reference): a reference series, not this run's numbers.
LAB_REFERENCE = {"base": (0.2334, 0.0760, 0.2015, 0.2015), "full": (0.4216, 0.1804, 0.3384, 0.3384),
                 "lora": (0.4081, 0.1633, 0.3251, 0.3249)}
LAB_LABEL = "Original lab, published (flan-t5-base, full test set)"


@dataclass
class RunData:
    folder: Path
    run: dict
    methods: list[str] = field(default_factory=list)  # the run's complete methods, in order
    train: dict = field(default_factory=dict)          # method -> its metrics.json
    sweeps: dict = field(default_factory=dict)         # method -> its sweep.json (methods trained with --sweep lr)
    evaluation: Optional[dict] = None
    int8: Optional[dict] = None                        # eval/int8.json: int8 vs exact (training/int8_quality.py)
    serving: Optional[dict] = None                     # eval/serving.json: serving cost (training/serving_cost.py)
    predictions: Optional[pd.DataFrame] = None
    problems: list[str] = field(default_factory=list)  # what could not be read, shown in the page
    left_out: dict = field(default_factory=dict)       # method -> why it is not shown (its metrics.json unreadable)

    @property
    def shown_predictions(self) -> Optional[pd.DataFrame]:
        """The test predictions the page shows under model names (the rest are kept for blind battles)."""
        if self.predictions is None:
            return None
        return self.predictions[~self.predictions["dialogue"].map(held_back_for_battles)].reset_index(drop=True)

    @property
    def battle_predictions(self) -> Optional[pd.DataFrame]:
        """The test predictions never shown with model names: what test battles draw from."""
        if self.predictions is None:
            return None
        return self.predictions[self.predictions["dialogue"].map(held_back_for_battles)].reset_index(drop=True)

    @property
    def models(self) -> list[str]:
        return [BASE, *self.methods]

    @property
    def prompt_template(self) -> str:
        """The prompt the run was evaluated (else trained) with."""
        if self.evaluation:
            return self.evaluation["decoding"].get("prompt_template", DEFAULT_PROMPT)
        first = next(iter(self.train.values()), None)
        return first["hyperparameters"].get("prompt_template", DEFAULT_PROMPT) if first else DEFAULT_PROMPT

    def label(self, model: str) -> str:
        """What people read for a model: the label its training wrote (metrics.json), else its name."""
        if model == BASE:
            return BASE_LABEL
        return self.train[model]["method"]["label"] if model in self.train else model

    @property
    def base_name(self) -> str:
        """The base as a person knows it: its Hub id, or, for a base the run built itself (tiny), what it is."""
        if not (self.folder / self.run["base_model"]).exists():
            return self.run["base_model"]
        full = [m for m in self.train.values() if m["method"].get("peft_type") == "FULL"]
        total = full[0]["parameters"]["total"] if full else None
        return "a tiny T5 built by this run" + (f", {total / 1e6:.1f} M parameters" if total else "")

    @property
    def labels(self) -> dict[str, str]:
        return {m: self.label(m) for m in self.models}


def held_back_for_battles(dialogue: str) -> bool:
    """About half the test dialogues are kept for blind battles and never shown with model names (Examples tab,
    Compare's picker): a battle's texts cannot be looked up there. Decided by a hash of the dialogue's text (not
    its id: a data set may hold one text twice), so it is stable and needs no state."""
    return hashlib.sha256(" ".join(dialogue.split()).encode()).digest()[0] % 2 == 1


def complete_runs(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the finished runs in `folder`, itself or its subfolders at any depth, newest first; the complete runs there
    that have no evaluation yet)."""
    runs = [p.parent for p in Path(folder).rglob(RUN_JSON) if has_trained(p.parent)]
    runs.sort(key=lambda p: -(p / RUN_JSON).stat().st_mtime)
    return [r for r in runs if is_finished(r)], [r for r in runs if not is_finished(r)]


def newest_finished_run(artifacts_dir: Path) -> Optional[Path]:
    runs = [p for p in Path(artifacts_dir).glob("*") if p.is_dir() and is_finished(p)]
    return max(runs, key=lambda p: (p / RUN_JSON).stat().st_mtime, default=None)


def predictions_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per test dialogue: every model's output (column = model name), its ROUGE-1, and how much the
    fine-tuned methods disagree (the range of their ROUGE-1)."""
    models = list(dict.fromkeys(m for r in rows for m in r["outputs"]))
    frame = pd.DataFrame({
        "id": [r["id"] for r in rows], "dialogue": [r["dialogue"] for r in rows],
        "references": [r["references"] for r in rows],
        **{m: [r["outputs"].get(m, "") for r in rows] for m in models},
        **{f"{m}_rouge1": [r["rouge"].get(m, {}).get("rouge1") for r in rows] for m in models},
        "rouge": [r["rouge"] for r in rows],
    })
    frame["dialogue_chars"] = frame["dialogue"].str.len()
    for m in models:  # the lenses, per example: what each summary invents or repeats
        frame[f"{m}_unsupported"] = [
            lenses.unsupported_details(t or "", d) for t, d in zip(frame[m], frame["dialogue"])
        ]
        frame[f"{m}_repeats"] = [lenses.repetitions(t or "") for t in frame[m]]
    frame["unsupported"] = frame[[f"{m}_unsupported" for m in models]].map(len).sum(axis=1)
    frame["repetition"] = frame[[f"{m}_repeats" for m in models]].map(len).sum(axis=1)
    methods = [f"{m}_rouge1" for m in models if m != "base"] or [f"{m}_rouge1" for m in models]
    frame["spread"] = frame[methods].max(axis=1) - frame[methods].min(axis=1)
    return frame


def load_run(folder: Path) -> RunData:
    """Everything the dashboard shows about a run; a missing or broken optional file becomes a problem line."""
    folder = Path(folder)
    data = RunData(folder=folder, run=read_run_file(folder, RUN_JSON), methods=list_methods(folder))
    for method in list(data.methods):
        try:
            data.train[method] = read_run_file(folder, method_metrics(method))
        except ArtifactError as e:  # left out, never shown with made-up values (no label, cost or score)
            data.methods.remove(method)
            data.left_out[method] = within_run(e, folder)
            data.problems.append(f"{method} is left out: {data.left_out[method]}")
            continue
        try:
            if (folder / method / SWEEP_JSON).exists():
                data.sweeps[method] = read_run_file(folder, f"{method}/{SWEEP_JSON}")
        except ArtifactError as e:
            data.problems.append(within_run(e, folder))
    if (folder / EVAL_METRICS).exists():
        try:  # a broken evaluation is named on the page; the models still serve
            data.evaluation, rows = read_evaluation(folder)
            data.predictions = predictions_frame(rows)
        except ArtifactError as e:
            data.problems.append(f"evaluation: {within_run(e, folder)}")
    for name, attribute, what in ((EVAL_INT8, "int8", "int8 figures"), (EVAL_SERVING, "serving", "serving cost")):
        if (folder / name).exists():
            try:
                setattr(data, attribute, read_run_file(folder, name))
            except ArtifactError as e:
                data.problems.append(f"{what}: {within_run(e, folder)}")
    return data


def within_run(error: Exception, folder: Path) -> str:
    """An error's text with the run folder's location on this server replaced by the run's name: visitors see
    which file of the run is wrong, never the server's paths."""
    return without_paths(str(error), folder)


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
