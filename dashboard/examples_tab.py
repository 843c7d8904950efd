"""The Examples tab: browse the test predictions, every model's output and its ROUGE, sorted by where the
methods disagree most, by length, or in test order. Layout only."""

import gradio as gr

from dashboard import handlers
from dashboard.handlers import AppState


def build_examples_tab(demo: gr.Blocks, state: AppState):
    data = state.data
    preds = data.predictions
    if preds is None:
        gr.Markdown("**No test predictions yet.** `python -m training.evaluate --run <run folder>` writes them.")
        return
    order = gr.Radio(list(handlers.SORTS), value="disagreement between methods", label="Sort by")
    choices = handlers.example_choices(preds, "disagreement between methods")
    picker = gr.Dropdown(choices=choices, value=choices[0][1], label=f"Test dialogue ({len(preds)})")
    with gr.Row():
        dialogue = gr.Textbox(label="Dialogue", lines=10, interactive=False)
        refs = gr.Textbox(label="References", lines=10, interactive=False)
    with gr.Row():
        outs = [gr.Textbox(label=data.label(m), lines=4, max_lines=6, interactive=False, min_width=200)
                for m in data.models if m in preds]
    scores = gr.Dataframe(label="Per-example ROUGE F1 (each metric averaged over the references)",
                          interactive=False)
    details = [dialogue, refs, *outs, scores]

    def resort(o):
        choices = handlers.example_choices(preds, o)
        return gr.update(choices=choices, value=choices[0][1])

    order.change(resort, order, picker, api_visibility="private")
    picker.change(lambda i: handlers.example_details(data, i), picker, details, api_visibility="private")
    demo.load(lambda i: handlers.example_details(data, i), picker, details, api_visibility="private")
