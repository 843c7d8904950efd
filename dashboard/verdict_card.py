"""The verdict on the Metrics tab: scoring/verdict.py's sentences with the run's labels as plain text, the chart
that carries them (ROUGE-1 against a cost a person picks, the frontier, the base and the best marked), and what
each method costs at a volume and prices a person sets (scoring/cost.py): the sentence, a chart of the total cost
against the number of summaries, and the cost table."""

from typing import Optional

import plotly.graph_objects as go

from contract.untrusted import chart_text, plain
from dashboard import figures, run_data
from scoring import cost
from scoring.verdict import Choice, choose, people_sentence, sentences, volume_sentence

COSTS = {"trainable parameters": ("trainable", True), "training seconds": ("train_seconds", False),
         "peak memory (MiB)": ("peak_memory_mib", False)}  # the chart's x axis: column, log scale


def choice_of(data: run_data.RunData) -> Optional[Choice]:
    return choose(data.evaluation, data.train)


def text(data: run_data.RunData, choice: Optional[Choice], ratings=None, n_votes: int = 0,
         prices: Optional[cost.Prices] = None, volume: cost.Volume = cost.Volume()) -> str:
    label = lambda m: plain(data.label(m))  # noqa: E731  (labels come from the run's files)
    prices = prices or cost.default_prices(data.train)
    at_volume = volume_sentence(choice, totals(data, prices, volume), prices, volume, label,
                                plain(cost.run_device(data.train)))
    return sentences(data.evaluation, choice, label, people_sentence(ratings, n_votes, choice, label), at_volume)


def totals(data: run_data.RunData, prices: cost.Prices, volume: cost.Volume):
    """Per method: one-time, serving and total $ at the volume (scoring/cost.py)."""
    return cost.run_totals(data.train, data.evaluation, data.serving, prices, volume)


VOLUMES = [10 ** k for k in range(2, 10)]  # the volume chart's x axis: 100 to a billion summaries


def volume_chart(data: run_data.RunData, choice: Optional[Choice], prices: cost.Prices, volume: cost.Volume):
    """Each method's total cost (tuning + training + serving in its cheapest form) against the number of summaries,
    the chosen volume marked; methods within noise of the best drawn solid. None when nothing is priced."""
    table = totals(data, prices, volume) if choice is not None else None
    if table is None or table.empty or table["total_usd"].isna().all():
        return None
    fig = go.Figure()
    xs = sorted({*VOLUMES, volume.summaries})
    for method, row in table.dropna(subset=["total_usd"]).iterrows():
        within = method in choice.candidates
        name = chart_text(data.label(method)) + ("" if within else " (worse beyond noise)")
        ys = [row["one_time_usd"] + row["usd_per_1000"] * x / 1000 for x in xs]
        fig.add_scatter(x=xs, y=ys, mode="lines", name=name, line={"dash": "solid" if within else "dot"},
                        hovertemplate=f"{name}<br>%{{x:,.0f}} summaries<br>$%{{y:,.4g}}<extra></extra>")
    fig.add_vline(x=volume.summaries, line={"dash": "dash", "color": "#5f6368"})  # (a log axis misplaces its label)
    fig.update_xaxes(title_text=f"summaries served in all (dashed: {volume.per_day:,.0f} a day for "
                                f"{volume.days:,.0f} days)", type="log")
    fig.update_yaxes(title_text="total cost, US$ (tuning + training + serving)", type="log")
    fig.update_layout(height=420, margin={"t": 30, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def cost_table(data: run_data.RunData, prices: cost.Prices, volume: cost.Volume):
    """Per method: every stage's device-hours, energy, serving and money (scoring/cost.py), labelled as the page
    labels them (a Dataframe cell is text, not Markdown)."""
    return cost.cost_table(data.train, data.evaluation, data.serving, prices, volume, data.label)


def chart(data: run_data.RunData, choice: Optional[Choice], axis: str = next(iter(COSTS))) -> Optional[go.Figure]:
    """ROUGE-1 (95% CI) against one cost; the frontier; the base as a dashed line; the best and the cheapest
    not-worse method marked. None without an evaluation (the card says so instead of an empty plot)."""
    if choice is None:
        return None
    column, log = COSTS[axis]
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
    fig.update_xaxes(title_text=axis, type="log" if log and (f[column] > 0).all() else "linear")
    fig.update_yaxes(title_text="ROUGE-1 F1 (95% CI)")
    fig.update_layout(height=420, margin={"t": 30, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig
