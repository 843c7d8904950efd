"""Pure Plotly figure builders: frames (and a model -> label map) in, figures out. No Gradio, no file reading.
Every chart takes any number of methods; colours come from one palette, fixed per model name."""

import itertools
import math
from typing import Optional

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from contract.untrusted import chart_text
from dashboard.run_data import LAB_LABEL, METRIC_LABELS

FIXED_COLORS = {"base": "#9aa0a6", "full": "#1a73e8", "lora": "#e8710a"}
PALETTE = ["#188038", "#a142f4", "#d93025", "#12b5cb", "#f9ab00", "#e52592", "#5f6368", "#3949ab", "#795548",
           *qualitative.Dark24, *qualitative.Light24]  # the whole catalogue (30+ models) stays distinguishable


def label_of(labels: dict, model: str) -> str:
    """A model's label as chart text: a label (or name) from a run file never becomes a link or markup."""
    return chart_text(labels.get(model, model))


def colors_for(models) -> dict[str, str]:
    """base/full/lora keep their colours; every other model takes the next palette colour, in the run's order
    (cycling if a run ever has more models than the palette has colours)."""
    others = itertools.cycle(PALETTE)
    return {m: FIXED_COLORS.get(m) or next(others) for m in models}


def pareto_front(frame: pd.DataFrame, cost: str, quality: str = "rouge1") -> pd.DataFrame:
    """The methods no other method beats on both axes (lower cost AND higher quality), sorted by cost."""
    rows = frame.sort_values([cost, quality], ascending=[True, False])
    best, keep = -math.inf, []
    for index, row in rows.iterrows():
        if row[quality] > best:
            keep.append(index)
            best = row[quality]
    return rows.loc[keep]


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 15}, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=320)
    return fig


def padded(values: pd.Series, floor=None) -> list[float]:
    """An axis range with room around the points, so markers and their labels are not cut at the edges."""
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, abs(high) * 0.2, 1e-3) * 0.3
    return [low - pad if floor is None else max(floor, low - pad), high + pad]


def rouge_bars(frame: pd.DataFrame, labels: dict) -> go.Figure:
    """Grouped bars per model and metric, CI error bars; the lab's published figures as hollow markers."""
    if frame.empty:
        return empty_figure("No ROUGE yet")
    fig = go.Figure()
    ours = frame[frame["series"] == "This run"]
    models = list(dict.fromkeys([*labels, *ours["model"]]))
    colors = colors_for(models)
    for model in models:
        rows = ours[ours["model"] == model]
        if rows.empty:
            continue
        fig.add_bar(name=label_of(labels, model), x=[METRIC_LABELS[m] for m in rows["metric"]], y=rows["mean"],
                    marker_color=colors[model], offsetgroup=model,
                    error_y={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                             "arrayminus": rows["mean"] - rows["ci_low"]},
                    hovertemplate="%{x}: %{y:.4f}<extra>" + label_of(labels, model) + "</extra>")
    add_seed_dots(fig, ours, models)
    lab = frame[frame["series"] == LAB_LABEL]
    for model in models:
        rows = lab[lab["model"] == model]
        if rows.empty or (not ours.empty and model not in set(ours["model"])):
            continue
        fig.add_scatter(name=f"{label_of(labels, model)}: {LAB_LABEL}", x=[METRIC_LABELS[m] for m in rows["metric"]],
                        y=rows["mean"], mode="markers", offsetgroup=model,
                        marker={"symbol": "diamond-open", "size": 12, "color": colors[model], "line": {"width": 2}},
                        hovertemplate="%{x}: %{y:.4f}<extra>lab, published</extra>")
    seeds = "; dots: each seed" if "seeds" in ours and ours["seeds"].notna().any() else ""
    fig.update_layout(title=f"ROUGE F1 by model (bars: this run, 95% CI{seeds}; diamonds: original lab, published)",
                      barmode="group", scattermode="group", yaxis_title="F1", yaxis_range=[0, 1],
                      legend={"orientation": "h", "y": -0.2}, height=460)
    return fig


def add_seed_dots(fig: go.Figure, ours: pd.DataFrame, models: list[str]) -> None:
    """Each seed's own mean as a dot on its method's bar (methods trained with --seeds K > 1): the spread the
    seed-aware interval holds, made visible."""
    shown = False
    for model in models:
        rows = ours[(ours["model"] == model)] if "seeds" in ours else ours.iloc[0:0]
        rows = rows[rows["seeds"].notna()]
        if rows.empty:
            continue
        x = [METRIC_LABELS[m] for m, seeds in zip(rows["metric"], rows["seeds"]) for _ in seeds]
        y = [v for seeds in rows["seeds"] for v in seeds.values()]
        text = [f"seed {s}" for seeds in rows["seeds"] for s in seeds]
        fig.add_scatter(x=x, y=y, text=text, mode="markers", offsetgroup=model, name="each seed", legendgroup="seeds",
                        showlegend=not shown, marker={"size": 7, "color": "white", "symbol": "circle",
                                                       "line": {"width": 1.5, "color": "#202124"}},
                        hovertemplate="%{x} %{text}: %{y:.4f}<extra></extra>")
        shown = True


def tuning_chart(frame: pd.DataFrame, labels: dict) -> go.Figure:
    """Validation loss against learning rate (log axes): per swept method a line per rung (every rate at the first,
    fewer at each later one; dotted until the end), its default rate ringed at the first rung, the chosen one
    starred at the end (its validation ROUGE-L on hover), rates that never gave a score as crosses at the bottom."""
    if frame.empty:
        return empty_figure("No learning-rate sweeps in this run: train with --sweep lr "
                            "(python -m training --preset tiny --methods all --sweep lr)")
    colors = colors_for(["base", *frame["method"].unique()])
    fig = go.Figure()
    for method, rows in frame.groupby("method", sort=False):
        name, color = label_of(labels, method), colors[method]
        scored = rows[rows["loss"].notna()].sort_values("learning_rate")
        steps = sorted(scored["step"].unique())
        for i, step in enumerate(steps):
            rung = scored[scored["step"] == step]
            fig.add_scatter(x=rung["learning_rate"], y=rung["loss"], mode="lines+markers", name=name,
                            legendgroup=method, showlegend=i == 0, opacity=0.45 + 0.55 * (i + 1) / len(steps),
                            line={"color": color, "dash": "solid" if step == steps[-1] else "dot"},
                            marker={"color": color, "size": 8},
                            hovertemplate=f"step {int(step)}, lr %{{x:.3g}}: loss %{{y:.3f}}<extra>{name}</extra>")
        marks = {"default": scored[scored["default"]].head(1), "chosen": scored[scored["chosen"]].tail(1)}
        for mark, symbol, size in (("default", "circle-open", 18), ("chosen", "star", 16)):
            picked = marks[mark]
            said = [f"{mark} rate" + (f", ROUGE-L {v:.3f}" if pd.notna(v) else "") for v in picked["rougeL"]]
            fig.add_scatter(x=picked["learning_rate"], y=picked["loss"], mode="markers", legendgroup=method,
                            showlegend=False, text=said, marker={"symbol": symbol, "size": size, "color": color,
                                                                 "line": {"width": 2, "color": color}},
                            hovertemplate=f"%{{text}}: %{{x:.3g}}<extra>{name}</extra>")
        lost = rows[rows["loss"].isna()]
        if not lost.empty:
            fig.add_scatter(x=lost["learning_rate"], y=[scored["loss"].min() if len(scored) else 1] * len(lost),
                            mode="markers", legendgroup=method, showlegend=False,
                            marker={"symbol": "x", "size": 11, "color": color},
                            text=[f"{s}: {n}" if n else s for s, n in zip(lost["status"], lost["note"])],
                            hovertemplate="lr %{x:.3g}: %{text}<extra>" + name + "</extra>")
    fig.update_layout(title="Learning-rate sweeps: validation loss at each rung (lower is better)<br><sub>dotted: "
                            "early rungs (every rate at the first, the best continue from their checkpoints); solid: "
                            "the end; ring: the default rate; star: the chosen one (served); ×: diverged or "
                            "failed</sub>",
                      xaxis={"type": "log", "title": "learning rate (log)"},
                      yaxis={"type": "log", "title": "validation loss (log)"}, height=460,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def parameter_bars(frame: pd.DataFrame, labels: dict) -> go.Figure:
    if frame.empty:
        return empty_figure("No training metrics yet")
    labels = [label_of(labels, m) for m in frame["method"]]
    fig = go.Figure()
    fig.add_bar(name="Total parameters", x=labels, y=frame["total"], marker_color="#9aa0a6",
                text=[f"{v:,}" for v in frame["total"]], textposition="outside")
    fig.add_bar(name="Trainable parameters", x=labels, y=frame["trainable"], marker_color="#1a73e8",
                text=[f"{v:,} ({p:.2f}%)" for v, p in zip(frame["trainable"], frame["trainable_percent"])],
                textposition="outside")
    low, high = math.log10(max(frame["trainable"].min(), 1)) - 0.5, math.log10(frame["total"].max()) + 0.6
    fig.update_layout(title="Parameters: total vs trainable (log scale)", barmode="group",
                      yaxis={"type": "log", "title": "parameters", "range": [low, high]}, height=420,
                      legend={"orientation": "h", "y": -0.15})
    return fig


COST_PANELS = [("train_seconds", "Training time (s)", 1), ("wall_seconds", "Wall time (s)", 1),
               ("peak_memory_bytes", "Peak memory (MiB)", 2**20), ("checkpoint_bytes", "Checkpoint (MiB)", 2**20),
               ("examples_per_second", "Examples / s", 1)]


def cost_bars(frame: pd.DataFrame, labels: dict) -> go.Figure:
    """One panel per cost figure, a bar per method (horizontal bars: any number of methods stays readable)."""
    from plotly.subplots import make_subplots

    if frame.empty:
        return empty_figure("No training metrics yet")
    colors = colors_for(["base", *frame["method"]])
    fig = make_subplots(rows=1, cols=len(COST_PANELS), subplot_titles=[t for _, t, _ in COST_PANELS],
                        shared_yaxes=True, horizontal_spacing=0.03)
    for col, (column, _, scale) in enumerate(COST_PANELS, 1):
        values = frame[column] / scale
        fig.add_bar(y=[label_of(labels, m) for m in frame["method"]], x=values, orientation="h", showlegend=False,
                    marker_color=[colors[m] for m in frame["method"]],
                    text=[f"{v:,.1f}" for v in values], textposition="outside", row=1, col=col)
        fig.update_xaxes(range=[0, values.max() * 1.45 or 1], row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    measure = frame["peak_memory_measure"].iloc[0].replace("_", " ")
    fig.update_layout(title=f"Training cost per method (device: {frame['device'].iloc[0]}; memory: {measure})",
                      height=max(320, 120 + 34 * len(frame)))
    return fig


def loss_curves(frame: pd.DataFrame, labels: dict) -> go.Figure:
    if frame.empty:
        return empty_figure("No loss history yet")
    fig = go.Figure()
    colors = colors_for(["base", *frame["method"].unique()])
    for method in frame["method"].unique():
        for split, dash in (("train", "solid"), ("eval", "dash")):
            rows = frame[(frame["method"] == method) & (frame["split"] == split)].sort_values("step")
            if not rows.empty:
                fig.add_scatter(x=rows["step"], y=rows["loss"], mode="lines+markers" if split == "eval" else "lines",
                                name=f"{label_of(labels, method)}: {split}",
                                line={"color": colors[method], "dash": dash})
    fig.update_layout(title="Loss over optimizer steps (solid: train, dashed: eval; log scale)", xaxis_title="step",
                      yaxis={"title": "cross-entropy loss", "type": "log"}, height=420,
                      legend={"orientation": "h", "y": -0.2})
    return fig


FRONTIER_PANELS = [("trainable", "trainable parameters (log)", 1, True),
                   ("train_seconds", "training seconds", 1, False),
                   ("peak_memory_bytes", "peak training memory (MiB)", 2**20, False),
                   ("checkpoint_bytes", "checkpoint size (MiB, log)", 2**20, True)]


MAX_NAMED_POINTS = 10  # beyond this many methods, only the frontier's points carry their names (hover names all)


def tradeoff_scatter(frame: pd.DataFrame, labels: dict, cost_basis: str = "") -> go.Figure:
    """ROUGE-1 (with 95% CI) against four costs, one panel each, the Pareto frontier drawn and its methods named:
    the methods worth paying for on that cost."""
    from plotly.subplots import make_subplots

    if frame.empty:
        return empty_figure("Needs evaluation results: run python -m training.evaluate")
    fronts = {cost: pareto_front(frame, cost) for cost, *_ in FRONTIER_PANELS}
    titles = [f"vs {title}<br><sub>frontier: {', '.join(label_of(labels, m) for m in fronts[cost]['method'])}</sub>"
              for cost, title, *_ in FRONTIER_PANELS]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, vertical_spacing=0.2, horizontal_spacing=0.08)
    colors = colors_for(["base", *frame["method"]])
    for i, (cost, title, scale, log) in enumerate(FRONTIER_PANELS):
        row, col = divmod(i, 2)
        x = frame[cost].clip(lower=1) / scale if log else frame[cost] / scale
        named = set(fronts[cost]["method"]) if len(frame) > MAX_NAMED_POINTS else set(frame["method"])
        fig.add_scatter(x=x, y=frame["rouge1"], mode="markers+text", showlegend=False,
                        text=[label_of(labels, m) if m in named else "" for m in frame["method"]],
                        customdata=[label_of(labels, m) for m in frame["method"]], textposition="top center",
                        error_y={"type": "data", "symmetric": False, "array": frame["ci_high"] - frame["rouge1"],
                                 "arrayminus": frame["rouge1"] - frame["ci_low"], "thickness": 1},
                        marker={"size": 12, "color": [colors[m] for m in frame["method"]]},
                        hovertemplate="%{customdata}<br>%{x:,.3g}<br>ROUGE-1 %{y:.4f}<extra></extra>",
                        row=row + 1, col=col + 1)
        front = fronts[cost]
        fx = front[cost].clip(lower=1) / scale if log else front[cost] / scale
        fig.add_scatter(x=fx, y=front["rouge1"], mode="lines", line={"dash": "dash", "color": "#202124", "width": 1},
                        name="Pareto frontier", showlegend=i == 0, row=row + 1, col=col + 1)
        if log:
            logs = x.map(math.log10)
            fig.update_xaxes(type="log", range=[logs.min() - 0.5, logs.max() + 0.5], row=row + 1, col=col + 1)
        else:
            fig.update_xaxes(range=padded(x, floor=0), row=row + 1, col=col + 1)
        fig.update_xaxes(title_text=title, row=row + 1, col=col + 1)
        fig.update_yaxes(title_text="ROUGE-1 F1", row=row + 1, col=col + 1)
    fig.update_yaxes(range=padded(pd.concat([frame["ci_low"], frame["ci_high"]]), floor=0))
    basis = f"<br><sub>training seconds: {cost_basis}</sub>" if cost_basis else ""
    fig.update_layout(title="Cost vs quality: each method's ROUGE-1 (95% CI) against what it costs; dashed: the "
                            f"Pareto frontier (no method is both cheaper and better){basis}", height=760,
                      legend={"orientation": "h", "y": -0.08})
    return fig


def forgetting_chart(frame: pd.DataFrame, labels: dict, task: str) -> go.Figure:
    """Quality gained (ROUGE-1 over the base) against retention lost (change in loss on the base's earlier task,
    95% CI), with the frontier: the methods that gain the most for what they forget."""
    fig = go.Figure()
    fig.add_scatter(x=frame["change"], y=frame["gain"], mode="markers+text", textposition="top center",
                    text=[label_of(labels, m) for m in frame["method"]], marker={"size": 12, "color": "#4285f4"},
                    error_x={"type": "data", "symmetric": False, "array": frame["ci_high"] - frame["change"],
                             "arrayminus": frame["change"] - frame["ci_low"], "thickness": 1},
                    hovertemplate="%{text}<br>forgetting %{x:.3f} nats<br>ROUGE-1 gain %{y:.3f}<extra></extra>",
                    name="methods")
    front = pareto_front(frame, "change", "gain")
    fig.add_scatter(x=front["change"], y=front["gain"], mode="lines", name="frontier",
                    line={"dash": "dash", "color": "#202124", "width": 1})
    fig.add_vline(x=0, line_dash="dot", line_color="#9aa0a6")
    fig.update_layout(title=f"Quality gained vs what the base forgot<br><sub>x: change in loss on {chart_text(task)} "
                            "(nats per token, 95% CI; right = forgot more); y: ROUGE-1 over the base</sub>",
                      xaxis_title="retention loss (Δ loss vs the base)", yaxis_title="ROUGE-1 gained over the base",
                      height=420, showlegend=False)
    return fig


def strength_chart(ratings: pd.DataFrame, labels: dict, n_votes: int,
                   controlled: Optional[pd.DataFrame] = None) -> go.Figure:
    """Bradley-Terry log-strengths with 95% bootstrap intervals, strongest on top; with `controlled`, the
    length-controlled strengths beside them (hollow markers): a lead that shrinks there was partly length."""
    if ratings.empty:
        return empty_figure("No votes yet")
    colors = colors_for(["base", *ratings["model"]])
    rows = ratings.iloc[::-1]
    fig = go.Figure(go.Scatter(
        x=rows["strength"], y=[label_of(labels, m) for m in rows["model"]], mode="markers",
        marker={"size": 13, "color": [colors[m] for m in rows["model"]]},
        error_x={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["strength"],
                 "arrayminus": rows["strength"] - rows["ci_low"]},
        hovertemplate="%{y}: %{x:.2f}<extra></extra>", name="raw"))
    if controlled is not None and not controlled.empty:
        lc = controlled.set_index("model").loc[rows["model"]]
        fig.add_scatter(x=lc["strength"], y=[label_of(labels, m) for m in rows["model"]], mode="markers",
                        name="length-controlled", marker={"size": 13, "symbol": "circle-open", "color": "#202124"},
                        error_x={"type": "data", "symmetric": False, "array": lc["ci_high"] - lc["strength"],
                                 "arrayminus": lc["strength"] - lc["ci_low"]},
                        hovertemplate="%{y}, length-controlled: %{x:.2f}<extra></extra>")
    fig.add_vline(x=0, line_dash="dot", line_color="#9aa0a6")
    fig.update_layout(title=f"Bradley–Terry strength from {n_votes} blind votes<br><sub>log scale, 0 = average; "
                            "95% bootstrap CI; ties as half wins, both-bad left out</sub>",
                      xaxis_title="strength (log odds of beating an average model)",
                      height=max(300, 100 + 40 * len(rows)))
    return fig


def win_rate_heatmap(table: pd.DataFrame, labels: dict) -> go.Figure:
    """Row beats column: the share of their games the row model won (ties half); blank where they never met."""
    if table.empty:
        return empty_figure("No votes yet")
    names = [label_of(labels, m) for m in table.index]
    text = [[("" if pd.isna(v) else f"{v:.0%}") for v in row] for row in table.values]
    fig = go.Figure(go.Heatmap(z=table.values, x=names, y=names, zmin=0, zmax=1, colorscale="RdBu", text=text,
                               texttemplate="%{text}", hovertemplate="%{y} beats %{x}: %{z:.0%}<extra></extra>",
                               colorbar={"title": "win rate"}))
    fig.update_layout(title="Win rate, row beats column (blind votes)", yaxis={"autorange": "reversed"},
                      height=max(320, 120 + 40 * len(names)))
    return fig


def slice_multiples(frame: pd.DataFrame, labels: dict) -> go.Figure:
    """Small multiples: ROUGE-1 by slice (length quartiles, speakers, topic), a bar per model with its 95% CI.
    A slice whose interval is wide is marked '(wide CI)': its differences are not to be read."""
    from plotly.subplots import make_subplots

    from dashboard.frames import SLICE_KINDS

    if frame.empty:
        return empty_figure("No slices yet: evaluate the run again (python -m training.evaluate)")
    kinds = [k for k in SLICE_KINDS if k in set(frame["kind"])]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[SLICE_KINDS[k] for k in kinds], shared_yaxes=True,
                        horizontal_spacing=0.04, column_widths=[max(2, frame[frame["kind"] == k]["slice"].nunique())
                                                                for k in kinds])
    models = list(dict.fromkeys([m for m in labels if m in set(frame["model"])]))
    colors = colors_for(models)
    for col, kind in enumerate(kinds, 1):
        part = frame[frame["kind"] == kind]
        for model in models:
            rows = part[part["model"] == model]
            names = [f"{chart_text(s)} (n={n}{', wide CI' if w else ''})"
                     for s, n, w in zip(rows["slice"], rows["n"], rows["wide"])]
            fig.add_bar(x=names, y=rows["mean"], name=label_of(labels, model), marker_color=colors[model],
                        legendgroup=model, showlegend=col == 1, offsetgroup=model,
                        error_y={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                                 "arrayminus": rows["mean"] - rows["ci_low"]}, row=1, col=col)
    fig.update_layout(title="Where methods fail: ROUGE-1 by slice of the test set (95% CI)", barmode="group",
                      yaxis_title="ROUGE-1 F1", legend={"orientation": "h", "y": -0.35}, height=480)
    return fig


def failure_bars(frame: pd.DataFrame, labels: dict) -> go.Figure:
    """Per model, the share of its test summaries that invent a detail, repeat themselves, or are empty (95% CI)."""
    if frame.empty:
        return empty_figure("No failure counts yet: evaluate the run again (python -m training.evaluate)")
    models = list(dict.fromkeys([m for m in labels if m in set(frame["model"])]))
    colors = colors_for(models)
    fig = go.Figure()
    for model in models:
        rows = frame[frame["model"] == model]
        fig.add_bar(x=rows["measure"], y=rows["mean"], name=label_of(labels, model), marker_color=colors[model],
                    error_y={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                             "arrayminus": rows["mean"] - rows["ci_low"]},
                    hovertemplate="%{x}: %{y:.1%}<extra>" + label_of(labels, model) + "</extra>")
    fig.update_layout(title="Share of test summaries that ... (95% CI)", barmode="group", yaxis_tickformat=".0%",
                      yaxis_range=[0, 1.05], legend={"orientation": "h", "y": -0.2}, height=420)
    return fig
