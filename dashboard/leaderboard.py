"""The Leaderboard across runs: one row per run x model with its quality, its costs and where it comes from, read
from each run's files (nothing is recomputed). Rows evaluated on different test dialogues are never ranked against
each other: each row names its test set (how many dialogues, a hash of their texts and references) and is ranked
within it. Pure pandas and Plotly: dashboard/leaderboard_tab.py lays out the widgets.
"""

import hashlib
import json
from typing import Optional

import pandas as pd
import plotly.graph_objects as go

from contract.untrusted import chart_text
from dashboard import figures
from dashboard.run_data import METRIC_LABELS, RunData
from scoring import cost

FAMILIES = {"FULL": "full fine-tuning", "LORA": "LoRA family", "ADALORA": "LoRA family", "LOHA": "LoRA family",
            "LOKR": "LoRA family", "VERA": "LoRA family", "IA3": "scaling vectors",
            "PROMPT_TUNING": "prompt learning", "PREFIX_TUNING": "prompt learning", "P_TUNING": "prompt learning",
            "OFT": "orthogonal", "BOFT": "orthogonal", "HRA": "orthogonal"}
BASE_FAMILY = "base (not fine-tuned)"
NOT_EVALUATED = "not evaluated"

# numeric columns a person can put on the Pareto plot's axes, and which way is better
DIRECTIONS = {"ROUGE-1": "higher", "ROUGE-2": "higher", "ROUGE-L": "higher", "trainable params": "lower",
              "train s": "lower", "train s (with sweep)": "lower", "peak memory MiB": "lower",
              "checkpoint MiB": "lower", "forgetting (Δ loss)": "lower", "device-hours (tune + train)": "lower",
              "energy kWh": "lower", "serving s per 1,000": "lower", "one-time $ (listed)": "lower",
              "$ per 1,000 (listed)": "lower", "P(on frontier)": "higher"}
FILTERS = ("base model", "preset", "family")  # multi-choice filters; plus merges / mixed batch (yes only)


def test_set_of(data: RunData) -> str:
    """'<n> dialogues · <hash>' of the evaluated test dialogues and their references, or 'not evaluated'."""
    preds = data.predictions
    if preds is None or preds.empty:
        return NOT_EVALUATED
    items = sorted(json.dumps([d, list(r)]) for d, r in zip(preds["dialogue"], preds["references"]))
    return f"{len(items)} dialogues · {hashlib.sha256(''.join(items).encode()).hexdigest()[:10]}"


def family_of(model: str, metrics: Optional[dict]) -> str:
    if metrics is None:
        return BASE_FAMILY
    kind = metrics["method"]["peft_type"]
    return FAMILIES.get(kind, kind.lower().replace("_", " ") or "unknown")


def code_of(source: Optional[dict], run: dict) -> str:
    """The commit a row was trained with, and "+ changes" when the tree had uncommitted ones."""
    commit, dirty = (source or {}).get("commit") or run.get("git_commit"), (source or {}).get("dirty")
    if dirty is None:
        dirty = run.get("git_dirty")
    return f"{(commit or 'unknown')[:10]}{' + changes' if dirty else ''}"


def interval(score: Optional[dict]) -> dict:
    return {"": None, " low": None, " high": None} if not score else {
        "": round(score["mean"], 4), " low": round(score["ci_low"], 4), " high": round(score["ci_high"], 4)}


def run_rows(name: str, key, data: RunData) -> list[dict]:
    """One row per model of one run; `key(model)` is the model's key in the app (what Compare and the API take)."""
    evaluation = data.evaluation or {}
    scores = evaluation.get("scores", {}).get(evaluation.get("headline_protocol"), {})
    test_set, machine = test_set_of(data), next(
        (m["cost"]["device"] for m in data.train.values()), "")
    lengths = evaluation.get("summary_length", {})
    kept = (evaluation.get("retention") or {}).get("models", {})
    costs = cost_columns(data)
    rows = []
    for model in data.models:
        metrics = data.train.get(model)
        cost = (metrics or {}).get("cost", {})
        rate = (metrics or {}).get("learning_rate") or {}
        method = (metrics or {}).get("method", {})  # base has no metrics.json
        row = {"run": name, "model": key(model), "method": data.label(model), "family": family_of(model, metrics),
               "base model": data.base_name, "preset": data.run["preset"], "test set": test_set}
        for metric, label in list(METRIC_LABELS.items())[:3]:
            row.update({f"{label}{k}": v for k, v in interval(scores.get(model, {}).get(metric)).items()})
        row.update({
            "trainable params": metrics["parameters"]["trainable"] if metrics else 0,
            "train s": round(cost.get("train_seconds", 0.0), 1),
            "train s (with sweep)": round(cost.get("train_seconds", 0.0) + cost.get("sweep_seconds", 0.0), 1),
            "peak memory MiB": round(cost["peak_memory_bytes"] / 2**20, 1) if cost else None,
            "checkpoint MiB": round(cost["checkpoint_bytes"] / 2**20, 3) if cost else None,
            "learning rate": rate.get("value", (metrics or {}).get("hyperparameters", {}).get("learning_rate")),
            "rate source": rate.get("source", "preset") if metrics else "",
            "seeds": 1 + len(metrics.get("seeds", [])) if metrics else 0,
            "merges": "yes" if method.get("merges") else "no" if metrics else "",
            "mixed batch": "yes" if method.get("mixed_batch") or not metrics else "no",
            "date": (metrics or data.run).get("created_at", data.run["created_at"])[:10],
            "summary tokens": round(lengths[model]["mean_tokens"], 1) if model in lengths else None,
            "forgetting (Δ loss)": kept.get(model, {}).get("change"),
            **costs.get(model, {}),
            "code": code_of((metrics or {}).get("source"), data.run),
            "machine": cost.get("device", machine)})
        rows.append(row)
    return rows


def cost_columns(data: RunData) -> dict:
    """Per model: what it costs from tuning to serving (scoring/cost.py) at the listed price of the run's device:
    device-hours, energy, its cheapest serving form's seconds and money per 1,000 summaries, P(on frontier)."""
    prices = cost.default_prices(data.train)
    stages = cost.stages(data.train, data.evaluation)
    forms = cost.serving_forms(data.serving, prices)
    cheapest = cost.cheapest_forms(forms)
    frontier = ((data.evaluation or {}).get("ranking") or {}).get("p_frontier", {})
    columns = {}
    for model in data.models:
        staged = stages.loc[model] if model in stages.index else None
        served = cheapest.loc[model] if model in cheapest.index else None
        hours = 0.0 if staged is None else staged["tuning_hours"] + staged["training_hours"]
        columns[model] = {
            "device-hours (tune + train)": round(hours, 5),
            "energy kWh": None if staged is None or staged["energy_how"] == "not measured" else
            float(f"{staged['energy_kwh']:.3g}"),
            "serving form": "" if served is None else served["form"],
            "serving s per 1,000": None if served is None else round(served["seconds_per_1000"], 2),
            "one-time $ (listed)": None if prices.device is None else float(f"{hours * prices.device:.3g}"),
            "$ per 1,000 (listed)": None if served is None or pd.isna(served["usd_per_1000"]) else
            float(f"{served['usd_per_1000']:.3g}"),
            "P(on frontier)": frontier.get(model)}
    return columns


def leaderboard_frame(runs: list[tuple[str, object, RunData]]) -> pd.DataFrame:
    """Every run's rows ((name, key function, data) per run), ranked by ROUGE-1 within each test set; rows of
    the same test set together, the best first."""
    return ranked(pd.DataFrame([row for name, key, data in runs for row in run_rows(name, key, data)]))


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """`rank` (by ROUGE-1, 1 = best) among the rows of the same test set, rows of a test set together."""
    if frame.empty:
        return frame
    frame = frame.drop(columns="rank", errors="ignore")
    frame.insert(0, "rank", frame.groupby("test set")["ROUGE-1"].rank(ascending=False, method="min"))
    frame.loc[frame["test set"] == NOT_EVALUATED, "rank"] = None
    order = frame.groupby("test set")["ROUGE-1"].transform("max").fillna(-1)
    return (frame.assign(_order=order).sort_values(["_order", "test set", "ROUGE-1"], ascending=[False, True, False],
                                                  kind="stable", na_position="last")
            .drop(columns="_order").reset_index(drop=True))


def filtered(frame: pd.DataFrame, runs=None, choices: Optional[dict] = None, merges: bool = False,
             mixed: bool = False) -> pd.DataFrame:
    """The rows a person asked for: runs and the FILTERS' chosen values (None or empty = all), and with `merges` /
    `mixed` only models that merge into the base / serve in one mixed batch; ranked among themselves."""
    keep = pd.Series(True, index=frame.index)
    if runs:
        keep &= frame["run"].isin(runs)
    for column, chosen in (choices or {}).items():
        if chosen:
            keep &= frame[column].isin(chosen)
    if merges:
        keep &= frame["merges"] == "yes"
    if mixed:
        keep &= frame["mixed batch"] == "yes"
    return ranked(frame[keep].reset_index(drop=True))


def groups_line(frame: pd.DataFrame) -> str:
    sets = [s for s in dict.fromkeys(frame["test set"]) if s != NOT_EVALUATED] if not frame.empty else []
    if len(sets) <= 1:
        return f"All rows shown were evaluated on the same test set ({sets[0]}); rank = by ROUGE-1." if sets else ""
    return (f"**{len(sets)} different test sets** ({'; '.join(sets)}): rows are ranked only against rows of their "
            "own test set (grouped together below); scores of different test sets are not comparable.")


def oriented(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """x as a cost (lower is better) and y as a quality (higher is better), whatever the columns' directions."""
    return frame.assign(_x=frame[x] * (1 if DIRECTIONS[x] == "lower" else -1),
                        _y=frame[y] * (1 if DIRECTIONS[y] == "higher" else -1))


def pareto_chart(frame: pd.DataFrame, x: str, y: str) -> go.Figure:
    """Every shown row on two columns, one colour per run; the frontier (rows no other row of the same test set
    beats on both axes, each axis in its own direction) as a line per test set; each run's full fine-tuning as a
    dashed reference line on the y axis."""
    shown = frame.dropna(subset=[x, y])
    if shown.empty:
        return figures.empty_figure("No row has both columns: pick others, or evaluate the runs.")
    fig = go.Figure()
    colors = dict(zip(dict.fromkeys(shown["run"]), figures.PALETTE * 4))
    for run, rows in shown.groupby("run", sort=False):
        name = chart_text(run)  # run folder names and method labels come from outside: text, never markup
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=name, marker={"size": 11,
                                 "color": colors[run]}, text=rows["method"].map(chart_text),
                                 hovertemplate="%{text}<br>" + f"{x}: %{{x}}<br>{y}: %{{y}}<extra>{name}</extra>"))
        full = rows[rows["family"] == FAMILIES["FULL"]]
        if not full.empty:
            fig.add_hline(y=float(full[y].iloc[0]), line={"dash": "dash", "color": colors[run], "width": 1},
                          annotation_text=f"full fine-tuning · {name}", annotation_position="top left")
    for test_set, rows in shown.groupby("test set", sort=False):
        front = figures.pareto_front(oriented(rows, x, y), "_x", "_y")
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", line={"color": "#5f6368", "width": 1.5},
                                 name=f"frontier · {chart_text(test_set)}", hoverinfo="skip"))
    fig.update_layout(title=f"{y} ({DIRECTIONS[y]} is better) vs {x} ({DIRECTIONS[x]} is better)",
                      xaxis_title=x, yaxis_title=y, height=480, legend={"orientation": "h", "y": -0.2})
    if DIRECTIONS[x] == "lower" and (shown[x] > 0).all() and shown[x].max() / max(shown[x].min(), 1e-9) > 100:
        fig.update_xaxes(type="log")
    return fig
