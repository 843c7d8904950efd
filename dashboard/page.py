"""The page: a header naming the run, then the tabs (each laid out by its own module) and the API endpoints."""

import os

import gradio as gr

from dashboard import handlers
from dashboard.compare_tab import build_compare_tab
from dashboard.examples_tab import build_examples_tab
from dashboard.handlers import CONCURRENCY, AppState
from dashboard.metrics_tab import build_metrics_tab
from dashboard.vote_tab import build_ratings_section, build_vote_tab

QUEUE_SIZE = 64  # visitors waiting at once; said explicitly: Gradio would cap a ZeroGPU Space's queue at 1


def header(state: AppState) -> str:
    run = state.data.run
    lines = ["# Dialogue summarization: which way of fine-tuning FLAN-T5 is worth it?",
             f"Run **{state.data.folder.name}** · preset `{run['preset']}` · base model `{run['base_model']}` · "
             f"data `{run['data_source']}` · {len(state.data.methods)} methods: "
             f"{', '.join(state.data.label(m) for m in state.data.methods)} · device **{state.models.describe()}**"]
    if state.demo_notice:
        lines.append(f"> {state.demo_notice}")
    for model, why in state.models.loaded.errors.items():
        lines.append(f"> ⚠️ **{state.data.label(model)} is unavailable**: {why}")
    return "\n\n".join(lines)


def build_demo(state: AppState) -> gr.Blocks:
    # before any launch reads it: forwarded addresses only from proxies the operator named (none unless told)
    handlers.trust_forwarded_from(os.environ.get(handlers.FORWARDED_ALLOW_IPS))
    with gr.Blocks(title="FLAN-T5 dialogue summarization: fine-tuning methods compared") as demo:
        gr.Markdown(header(state))
        with gr.Tab("Compare"):
            build_compare_tab(state)
        if state.votes is not None:
            with gr.Tab("Vote"):
                build_vote_tab(state)
        with gr.Tab("Metrics"):
            if state.votes is not None:
                build_ratings_section(demo, state)
            build_metrics_tab(state)
        with gr.Tab("Examples"):
            build_examples_tab(demo, state)
        # the handlers only queue requests for the batcher and wait: on ZeroGPU the batcher's backend makes the
        # @spaces.GPU call (dashboard/backends.py), never a handler
        gr.api(handlers.make_summarize_api(state), api_name="summarize", concurrency_limit=CONCURRENCY)
        gr.api(handlers.make_summarize_all_api(state), api_name="summarize_all", concurrency_limit=CONCURRENCY)
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
