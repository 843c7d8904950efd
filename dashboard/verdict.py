"""The verdict on the Metrics tab: scoring/verdict.py's sentences with the run's labels as plain text, and the one
chart that carries them (ROUGE-1 against a cost a person picks, the frontier, the base and the best marked)."""

from typing import Optional

import plotly.graph_objects as go

from contract.untrusted import chart_text, plain
from dashboard import figures
from dashboard import run_data as rd
from scoring.verdict import Choice, choose, people_sentence, sentences

COSTS = {"trainable parameters": ("trainable", True), "training seconds": ("train_seconds", False),
         "peak memory (MiB)": ("peak_memory_mib", False)}  # the chart's x axis: column, log scale


def choice_of(data: rd.RunData) -> Optional[Choice]:
    return choose(data.evaluation, data.train)


def text(data: rd.RunData, choice: Optional[Choice], ratings=None, n_votes: int = 0) -> str:
    label = lambda m: plain(data.label(m))  # noqa: E731  (labels come from the run's files)
    return sentences(data.evaluation, choice, label, people_sentence(ratings, n_votes, choice, label))


def chart(data: rd.RunData, choice: Optional[Choice], cost: str = next(iter(COSTS))) -> Optional[go.Figure]:
    """ROUGE-1 (95% CI) against one cost; the frontier; the base as a dashed line; the best and the cheapest
    not-worse method marked. None without an evaluation (the card says so instead of an empty plot)."""
    if choice is None:
        return None
    column, log = COSTS[cost]
    f = choice.frame.reset_index()
    labels = [chart_text(data.label(m)) for m in f["method"]]
    fig = go.Figure()
    fig.add_scatter(x=f[column], y=f["rouge1"], mode="markers+text", text=labels, textposition="top center",
                    name="methods", marker={"size": 11, "color": "#4285f4"},
                    error_y={"type": "data", "symmetric": False, "array": f["ci_high"] - f["rouge1"],
                             "arrayminus": f["rouge1"] - f["ci_low"], "thickness": 1},
                    hovertemplate="%{text}<br>%{x:,.3g}<br>ROUGE-1 %{y:.4f}<extra></extra>")
    front = figures.pareto_front(f, column)
    fig.add_scatter(x=front[column], y=front["rouge1"], mode="lines", name="frontier (no method cheaper and better)",
                    line={"dash": "dash", "color": "#202124", "width": 1})
    marks = ((choice.best, "star", "best"), (choice.cheapest, "circle-open", "cheapest not worse"))
    for method, symbol, name in marks:
        row = f[f["method"] == method].iloc[0]
        label = chart_text(data.label(method))
        fig.add_scatter(x=[row[column]], y=[row["rouge1"]], mode="markers", name=f"{name}: {label}",
                        marker={"symbol": symbol, "size": 22, "color": "#ea4335", "line": {"width": 2}})
    base = data.evaluation["scores"][data.evaluation["headline_protocol"]].get("base", {}).get("rouge1")
    if base:
        fig.add_hline(y=base["mean"], line={"dash": "dot", "color": "#5f6368"},
                      annotation_text="base (no fine-tuning)", annotation_position="bottom right")
    fig.update_xaxes(title_text=cost, type="log" if log and (f[column] > 0).all() else "linear")
    fig.update_yaxes(title_text="ROUGE-1 F1 (95% CI)")
    fig.update_layout(height=420, margin={"t": 30, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig
