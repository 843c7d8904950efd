"""The page: a header naming the run, then the tabs (each laid out by its own module) and the API endpoints."""

import json
import os
from functools import partial

import gradio as gr

from contract.untrusted import plain
from dashboard import handlers
from dashboard.building import RELOAD_JS
from dashboard.compare_tab import build_compare_tab
from dashboard.examples_tab import build_examples_tab
from dashboard.fair_queue import cap_per_client
from dashboard.handlers import CONCURRENCY, AppState
from dashboard.leaderboard import leaderboard_frame
from dashboard.leaderboard_tab import TABS, build_leaderboard_tab, view_from_query
from dashboard.metrics_tab import build_metrics_tab
from dashboard.vote_tab import build_ratings_section, build_vote_tab

TITLE = "FLAN-T5 dialogue summarization: fine-tuning methods compared"  # the browser tab's (and /config's) title
QUEUE_SIZE = 64  # visitors waiting at once; said explicitly: Gradio would cap a ZeroGPU Space's queue at 1


def header(state: AppState) -> str:
    """What is served; every name and value from the runs' files shown as plain text (contract/untrusted.py)."""
    run = state.data.run
    labels = ", ".join(plain(state.data.label(m)) for m in state.data.methods)
    count = len(state.data.methods)
    methods = f"{count} method{'' if count == 1 else 's'}"
    lines = ["# Dialogue summarization: which way of fine-tuning FLAN-T5 is worth it?",
             f"Run **{plain(state.data.folder.name)}** · preset {plain(run['preset'])} · base model "
             f"{plain(state.data.base_name)} · data {plain(run['data_source'])} · {methods}: "
             f"{labels} · device **{state.models.describe()}**"]
    if len(state.runs.runs) > 1:
        names = ", ".join(plain(r.name) for r in state.runs.runs)
        lines.append(f"**{len(state.runs.runs)} runs loaded**: {names}. Compare and the Leaderboard use every run (a "
                     "model is named `<run>/<model>`, labelled `<label> · <run>`); Vote, Metrics and Examples show "
                     f"**{plain(state.runs.runs[0].name)}**.")
    for name, why in state.left_out.items():
        lines.append(f"> ⚠️ **Run {plain(name)} is left out**: {plain(why, limit=300)}")
    if state.demo_notice:
        lines.append(f"> {state.demo_notice}")
    for key, why in state.runs.errors.items():
        lines.append(f"> ⚠️ **{plain(state.runs.label(key))} is unavailable**: {plain(why, limit=300)}")
    return "\n\n".join(lines)


def left_out_rows(state: AppState, columns: list[str]) -> list[dict]:
    """/runs_table's rows for what is not served: a run that could not be loaded, a method whose metrics.json is
    unreadable; every value empty but the run, the model and `left out` (why)."""
    empty = dict.fromkeys(columns)
    runs = [{**empty, "run": name, "left out": why} for name, why in state.left_out.items()]
    methods = [{**empty, "run": r.name, "model": state.runs.key(r, m), "left out": why}
               for r in state.runs.runs for m, why in r.data.left_out.items()]
    return runs + methods


def page_title(state: AppState) -> str:
    """The browser tab's (and /config's) title; a run still training names how far it is, so a page of an older
    state of it sees the newer app (RELOAD_JS)."""
    if not state.following:
        return TITLE
    done = len(state.data.methods)
    stage = "evaluated" if state.data.evaluation else "training goes on"
    return f"{TITLE} ({done} method{'s' if done != 1 else ''} ready, {stage})"


def build_demo(state: AppState) -> gr.Blocks:
    # before any launch reads it: forwarded addresses only from proxies the operator named (none unless told)
    handlers.trust_forwarded_from(os.environ.get(handlers.FORWARDED_ALLOW_IPS))
    board = leaderboard_frame([(r.name, partial(state.runs.key, r), r.data) for r in state.runs.runs])
    tab_ids = [t for t in TABS if t != "vote" or state.votes is not None]
    title = page_title(state)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(header(state))
        with gr.Tabs() as tabs:
            with gr.Tab("Compare", id="compare"):
                chosen = build_compare_tab(state)
            if state.votes is not None:
                with gr.Tab("Vote", id="vote"):
                    build_vote_tab(state)
            with gr.Tab("Metrics", id="metrics"):
                build_metrics_tab(demo, state)
                if state.votes is not None:
                    with gr.Accordion("People's verdict (blind votes)", open=False):
                        build_ratings_section(demo, state)
            with gr.Tab("Leaderboard", id="leaderboard"):
                inputs, values_of, redraw, outputs, said, problems_line = build_leaderboard_tab(
                    board, [r.name for r in state.runs.runs], chosen)
            with gr.Tab("Examples", id="examples"):
                build_examples_tab(demo, state)

        def open_view(request: gr.Request):
            """The view a link's query names (?runs=...&tab=...&models=...), else the defaults. The tab and the
            Compare models change only when the link names them: a visitor may have clicked before this arrives."""
            query = dict(request.query_params) if request else {}
            view = view_from_query(query, board, state.runs.keys, tab_ids)
            values = values_of(view, state.runs.default)
            shown = [*values[:-1], values[-1] if view.models else gr.skip()]
            return [gr.Tabs(selected=view.tab) if "tab" in query else gr.skip(), problems_line(view), *shown,
                    *redraw(*values)]

        demo.load(open_view, None, [tabs, said, *inputs, *outputs], api_visibility="private")
        if state.following:  # the app is served again as the run advances: this page reloads into the newer one
            demo.load(None, None, None, js=RELOAD_JS % json.dumps(title))

        def runs_table() -> list[dict]:
            """The Leaderboard's rows, every loaded run x model: quality with intervals, costs, provenance and test
            set (rows of different test sets are ranked only within their own)."""
            rows = board.astype(object).where(board.notna(), None).to_dict("records")
            return [*rows, *left_out_rows(state, list(board.columns))]

        gr.api(runs_table, api_name="runs_table")
        # the handlers only queue requests for the batcher and wait: on ZeroGPU the batcher's backend makes the
        # @spaces.GPU call (dashboard/backends.py), never a handler
        gr.api(handlers.make_summarize_api(state), api_name="summarize", concurrency_limit=CONCURRENCY)
        gr.api(handlers.make_summarize_all_api(state), api_name="summarize_all", concurrency_limit=CONCURRENCY)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    cap_per_client(demo, state.max_queued_per_client, handlers.client_address)
    return demo
