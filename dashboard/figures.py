"""Pure Plotly figure builders: frames in, figures out. No Gradio, no file reading."""

import math

import pandas as pd
import plotly.graph_objects as go

from dashboard.run_data import LAB_LABEL, METRIC_LABELS, MODEL_LABELS, MODEL_ORDER

COLORS = {"base": "#9aa0a6", "full": "#1a73e8", "lora": "#e8710a"}
METHOD_LABELS = {"full": "Full fine-tune", "lora": "LoRA"}


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


def rouge_bars(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars per model and metric, CI error bars; the lab's published figures as hollow markers."""
    if frame.empty:
        return empty_figure("No ROUGE yet")
    fig = go.Figure()
    ours = frame[frame["series"] == "This run"]
    for model in MODEL_ORDER:
        rows = ours[ours["model"] == model]
        if rows.empty:
            continue
        fig.add_bar(name=MODEL_LABELS[model], x=[METRIC_LABELS[m] for m in rows["metric"]], y=rows["mean"],
                    marker_color=COLORS[model], offsetgroup=model,
                    error_y={"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["mean"],
                             "arrayminus": rows["mean"] - rows["ci_low"]},
                    hovertemplate="%{x}: %{y:.4f}<extra>" + MODEL_LABELS[model] + "</extra>")
    lab = frame[frame["series"] == LAB_LABEL]
    for model in MODEL_ORDER:
        rows = lab[lab["model"] == model]
        if rows.empty:
            continue
        fig.add_scatter(name=f"{MODEL_LABELS[model]}: {LAB_LABEL}", x=[METRIC_LABELS[m] for m in rows["metric"]],
                        y=rows["mean"], mode="markers", offsetgroup=model,
                        marker={"symbol": "diamond-open", "size": 12, "color": COLORS[model], "line": {"width": 2}},
                        hovertemplate="%{x}: %{y:.4f}<extra>lab, published</extra>")
    fig.update_layout(title="ROUGE F1 by model (bars: this run, 95% CI; diamonds: original lab, published)",
                      barmode="group", scattermode="group", yaxis_title="F1", yaxis_range=[0, 1],
                      legend={"orientation": "h", "y": -0.2}, height=460)
    return fig


def parameter_bars(frame: pd.DataFrame) -> go.Figure:
    if frame.empty:
        return empty_figure("No training metrics yet")
    labels = [METHOD_LABELS.get(m, m) for m in frame["method"]]
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


def cost_bars(frame: pd.DataFrame) -> go.Figure:
    """One small panel per cost figure, full vs LoRA side by side."""
    from plotly.subplots import make_subplots

    if frame.empty:
        return empty_figure("No training metrics yet")
    fig = make_subplots(rows=1, cols=len(COST_PANELS), subplot_titles=[t for _, t, _ in COST_PANELS])
    for col, (column, _, scale) in enumerate(COST_PANELS, 1):
        values = frame[column] / scale
        fig.add_bar(x=[METHOD_LABELS.get(m, m) for m in frame["method"]], y=values, showlegend=False,
                    marker_color=[COLORS.get(m, "#555") for m in frame["method"]],
                    text=[f"{v:,.1f}" for v in values], textposition="outside", row=1, col=col)
        fig.update_yaxes(range=[0, values.max() * 1.25 or 1], row=1, col=col)
    measure = frame["peak_memory_measure"].iloc[0].replace("_", " ")
    fig.update_layout(title=f"Training cost, full vs LoRA (device: {frame['device'].iloc[0]}; memory: {measure})",
                      height=400)
    return fig


def loss_curves(frame: pd.DataFrame) -> go.Figure:
    if frame.empty:
        return empty_figure("No loss history yet")
    fig = go.Figure()
    for method in frame["method"].unique():
        for split, dash in (("train", "solid"), ("eval", "dash")):
            rows = frame[(frame["method"] == method) & (frame["split"] == split)].sort_values("step")
            if not rows.empty:
                fig.add_scatter(x=rows["step"], y=rows["loss"], mode="lines+markers" if split == "eval" else "lines",
                                name=f"{METHOD_LABELS.get(method, method)}: {split}",
                                line={"color": COLORS.get(method), "dash": dash})
    fig.update_layout(title="Loss over optimizer steps (solid: train, dashed: eval; log scale)", xaxis_title="step",
                      yaxis={"title": "cross-entropy loss", "type": "log"}, height=420,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def tradeoff_scatter(frame: pd.DataFrame) -> go.Figure:
    """ROUGE-1 against trainable parameters and against training time, one panel each."""
    from plotly.subplots import make_subplots

    if frame.empty:
        return empty_figure("Needs evaluation results: run python -m training.evaluate")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["ROUGE-1 vs trainable parameters",
                                                        "ROUGE-1 vs training time"])
    for col, x in ((1, "trainable"), (2, "train_seconds")):
        fig.add_scatter(x=frame[x], y=frame["rouge1"], mode="markers+text", showlegend=False,
                        text=[METHOD_LABELS.get(m, m) for m in frame["method"]], textposition="top center",
                        marker={"size": 14, "color": [COLORS.get(m) for m in frame["method"]]}, row=1, col=col)
    logs = frame["trainable"].clip(lower=1).map(math.log10)
    fig.update_xaxes(type="log", title_text="trainable parameters (log)", row=1, col=1,
                     range=[logs.min() - 0.5, logs.max() + 0.5])
    fig.update_xaxes(title_text="training seconds", row=1, col=2, range=padded(frame["train_seconds"]))
    fig.update_yaxes(range=padded(frame["rouge1"], floor=0))
    fig.update_yaxes(title_text="ROUGE-1 F1", row=1, col=1)
    fig.update_layout(title="Cost vs quality", height=420)
    return fig
