"""The page: a header naming the run, then the tabs (each laid out by its own module) and the API endpoints."""

import os
from functools import partial

import gradio as gr

from dashboard import handlers
from dashboard.compare_tab import build_compare_tab
from dashboard.examples_tab import build_examples_tab
from dashboard.handlers import CONCURRENCY, AppState
from dashboard.leaderboard import leaderboard_frame
from dashboard.leaderboard_tab import TABS, build_leaderboard_tab, view_from_query
from dashboard.metrics_tab import build_metrics_tab
from dashboard.vote_tab import build_ratings_section, build_vote_tab

QUEUE_SIZE = 64  # visitors waiting at once; said explicitly: Gradio would cap a ZeroGPU Space's queue at 1


def header(state: AppState) -> str:
    run = state.data.run
    lines = ["# Dialogue summarization: which way of fine-tuning FLAN-T5 is worth it?",
             f"Run **{state.data.folder.name}** · preset `{run['preset']}` · base model `{run['base_model']}` · "
             f"data `{run['data_source']}` · {len(state.data.methods)} methods: "
             f"{', '.join(state.data.label(m) for m in state.data.methods)} · device **{state.models.describe()}**"]
    if len(state.runs.runs) > 1:
        lines.append(f"**{len(state.runs.runs)} runs loaded**: {', '.join(r.name for r in state.runs.runs)}. Compare "
                     "and the Leaderboard use every run (a model is named `<run>/<model>`, labelled `<label> · "
                     f"<run>`); Vote, Metrics and Examples show **{state.runs.runs[0].name}**.")
    if state.demo_notice:
        lines.append(f"> {state.demo_notice}")
    for key, why in state.runs.errors.items():
        lines.append(f"> ⚠️ **{state.runs.label(key)} is unavailable**: {why}")
    return "\n\n".join(lines)


def build_demo(state: AppState) -> gr.Blocks:
    # before any launch reads it: forwarded addresses only from proxies the operator named (none unless told)
    handlers.trust_forwarded_from(os.environ.get(handlers.FORWARDED_ALLOW_IPS))
    board = leaderboard_frame([(r.name, partial(state.runs.key, r), r.data) for r in state.runs.runs])
    tab_ids = [t for t in TABS if t != "vote" or state.votes is not None]
    with gr.Blocks(title="FLAN-T5 dialogue summarization: fine-tuning methods compared") as demo:
        gr.Markdown(header(state))
        with gr.Tabs() as tabs:
            with gr.Tab("Compare", id="compare"):
                chosen = build_compare_tab(state)
            if state.votes is not None:
                with gr.Tab("Vote", id="vote"):
                    build_vote_tab(state)
            with gr.Tab("Metrics", id="metrics"):
                if state.votes is not None:
                    build_ratings_section(demo, state)
                build_metrics_tab(state)
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

        def runs_table() -> list[dict]:
            """The Leaderboard's rows, every loaded run x model: quality with intervals, costs, provenance and test
            set (rows of different test sets are ranked only within their own)."""
            return board.astype(object).where(board.notna(), None).to_dict("records")

        gr.api(runs_table, api_name="runs_table")
        # the handlers only queue requests for the batcher and wait: on ZeroGPU the batcher's backend makes the
        # @spaces.GPU call (dashboard/backends.py), never a handler
        gr.api(handlers.make_summarize_api(state), api_name="summarize", concurrency_limit=CONCURRENCY)
        gr.api(handlers.make_summarize_all_api(state), api_name="summarize_all", concurrency_limit=CONCURRENCY)
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
