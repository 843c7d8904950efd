"""The Leaderboard tab: every loaded run's models in one table with filters, a Pareto plot over any two columns,
CSV download of exactly the rows shown, and a link that reopens the view (runs, models, tab, filters):

    /?runs=quick,gpu&tab=leaderboard&family=LoRA+family&x=trainable+params&y=ROUGE-1

Layout and the query's meaning only; dashboard/leaderboard.py builds the table and the chart.
"""

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
import pandas as pd

from contract.untrusted import csv_safe, plain
from dashboard import leaderboard as lb

TABS = ("compare", "vote", "metrics", "leaderboard", "examples")  # the page's tab ids, as a link names them
FILTER_KEYS = {"base": "base model", "preset": "preset", "family": "family"}  # query key -> column
CSV_DIR = Path(tempfile.gettempdir()) / "dialogsum-leaderboard"


@dataclass
class View:
    """What a link reopens; `problems` says what the link asked for that the app does not have."""
    tab: str = "compare"
    runs: list = field(default_factory=list)
    models: list = field(default_factory=list)
    choices: dict = field(default_factory=dict)
    merges: bool = False
    mixed: bool = False
    x: str = "trainable params"
    y: str = "ROUGE-1"
    problems: list = field(default_factory=list)


def listed(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def view_from_query(params: dict, frame: pd.DataFrame, keys: list[str], tabs=TABS) -> View:
    """A View from a URL's query; unknown values are left out and named in `problems` (shown on the page)."""
    view = View()

    def known(name: str, values: list[str], allowed) -> list[str]:
        bad = [v for v in values if v not in allowed]
        if bad:  # the link's values and the runs' names are outside text: shown as plain, short text
            view.problems.append(f"{name}={plain(','.join(bad))} is not in this app (it has: "
                                 f"{plain(', '.join(map(str, allowed)), limit=300)})")
        return [v for v in values if v in allowed]

    if "tab" in params:
        view.tab = (known("tab", [params["tab"]], tabs) or ["compare"])[0]
    runs = list(dict.fromkeys(frame["run"])) if not frame.empty else []
    view.runs = known("runs", listed(params.get("runs")), runs) or runs
    view.models = known("models", listed(params.get("models")), keys)
    for key, column in FILTER_KEYS.items():
        options = sorted(set(frame[column])) if not frame.empty else []
        view.choices[column] = known(key, listed(params.get(key)), options)
    view.merges, view.mixed = params.get("merges") == "yes", params.get("mixed") == "yes"
    for axis in ("x", "y"):
        if axis in params:
            setattr(view, axis, (known(axis, [params[axis]], list(lb.DIRECTIONS)) or [getattr(view, axis)])[0])
    return view


def query_of(view: View, all_runs: list[str]) -> str:
    """The link's query for a view (only what differs from the defaults)."""
    params = {"tab": view.tab}
    if view.runs and set(view.runs) != set(all_runs):
        params["runs"] = ",".join(view.runs)
    if view.models:
        params["models"] = ",".join(view.models)
    params.update({key: ",".join(view.choices[col]) for key, col in FILTER_KEYS.items() if view.choices.get(col)})
    params.update({k: "yes" for k, on in (("merges", view.merges), ("mixed", view.mixed)) if on})
    params.update({"x": view.x, "y": view.y})
    return "?" + urlencode(params)


def csv_file(shown: pd.DataFrame) -> str:
    """The rows shown, as a CSV file named by its content (written once)."""
    text = csv_safe(shown).to_csv(index=False)
    CSV_DIR.mkdir(parents=True, exist_ok=True)
    path = CSV_DIR / f"leaderboard-{hashlib.sha256(text.encode()).hexdigest()[:12]}.csv"
    if not path.exists():
        path.write_text(text)
    return str(path)


def build_leaderboard_tab(frame: pd.DataFrame, runs_all: list[str], chosen: gr.CheckboxGroup):
    """The tab's widgets (`chosen`: Compare's models, which the link carries too); returns (the view's inputs,
    a function view -> their values, the function that redraws the table, chart, link and CSV from the inputs,
    and its outputs)."""
    gr.Markdown("Every loaded run's models. Filter, pick the plot's axes, download what is shown, or copy the link "
                "to reopen this view. Rows evaluated on different test dialogues are ranked only within their "
                "own test set.")
    with gr.Row():
        runs = gr.CheckboxGroup(runs_all, value=runs_all, label="Runs", elem_id="lb-runs")
        choices = {col: gr.Dropdown(sorted(set(frame[col])) if not frame.empty else [], multiselect=True,
                                    value=[], label=f"{col} (none chosen = all)") for col in FILTER_KEYS.values()}
    with gr.Row():
        merges = gr.Checkbox(False, label="only methods that merge into the base")
        mixed = gr.Checkbox(False, label="only models served in one mixed batch")
        x = gr.Dropdown(list(lb.DIRECTIONS), value="trainable params", label="Pareto plot: x")
        y = gr.Dropdown(list(lb.DIRECTIONS), value="ROUGE-1", label="Pareto plot: y")
    said = gr.Markdown(elem_id="lb-link-problems")  # what a link asked for that the app does not have
    groups = gr.Markdown(elem_id="lb-groups")
    table = gr.Dataframe(interactive=False, elem_id="lb-table", wrap=True)
    with gr.Row():
        download = gr.DownloadButton("Download these rows (CSV)", elem_id="lb-csv")
        link = gr.Markdown(elem_id="lb-link")
    plot = gr.Plot(elem_id="lb-plot")
    inputs = [runs, *choices.values(), merges, mixed, x, y, chosen]

    def values_of(view: View, default_models: list) -> list:
        return [view.runs, *[view.choices.get(c, []) for c in FILTER_KEYS.values()], view.merges, view.mixed,
                view.x, view.y, view.models or default_models]

    def redraw(picked_runs, *rest):
        *picked, only_merges, only_mixed, x_col, y_col, models = rest
        view = View("leaderboard", list(picked_runs), list(models), dict(zip(FILTER_KEYS.values(), picked)),
                    only_merges, only_mixed, x_col, y_col)
        shown = lb.filtered(frame, picked_runs, view.choices, only_merges, only_mixed)
        return (lb.groups_line(shown), shown, csv_file(shown),
                f"Link to this view: [`{query_of(view, runs_all)}`]({query_of(view, runs_all)})",
                lb.pareto_chart(shown, x_col, y_col))

    def problems_line(view: View) -> str:
        return "  \n".join(f"⚠️ The link asked for {p}: left out." for p in view.problems)

    outputs = [groups, table, download, link, plot]
    for widget in inputs:
        widget.change(redraw, inputs, outputs, api_visibility="private")
    return inputs, values_of, redraw, outputs, said, problems_line
