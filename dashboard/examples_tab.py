"""The Examples tab: browse the test predictions, every model's output and its ROUGE, sorted by where the
methods disagree most, by length, or in test order. Layout only."""

import gradio as gr

from dashboard import handlers
from dashboard.handlers import AppState


def build_examples_tab(demo: gr.Blocks, state: AppState):
    data = state.data
    preds = data.shown_predictions
    if preds is None:
        gr.Markdown("**No test predictions yet.** `python -m training.evaluate --run <run folder>` writes them.")
        return
    if preds.empty:  # a small evaluation can fall wholly on the battle side of the hash
        gr.Markdown(f"All {len(data.predictions)} evaluated test dialogues are kept for blind battles (Vote), so "
                    "none is shown here under model names. Evaluate more dialogues (`python -m training.evaluate "
                    "--run <run folder>` without --limit) to browse them.")
        return
    gr.Markdown(f"{len(preds)} of the {len(data.predictions)} test dialogues are shown here; the others are kept "
                "for blind battles (Vote), so a battle's summaries cannot be looked up under their names.")
    order = gr.Radio(list(handlers.SORTS), value="disagreement between methods", label="Sort by")
    choices = handlers.example_choices(preds, "disagreement between methods")
    picker = gr.Dropdown(choices=choices, value=choices[0][1], label=f"Test dialogue ({len(preds)})")
    with gr.Row():
        dialogue = gr.Textbox(label="Dialogue", lines=10, interactive=False)
        refs = gr.Textbox(label="References", lines=10, interactive=False)
    with gr.Row():
        outs = [gr.HighlightedText(label=data.label(m), combine_adjacent=True, min_width=200,
                                   color_map={"unsupported": "red", "repeats": "orange"}, elem_id=f"example-{m}")
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
