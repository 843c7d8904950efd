"""The Compare tab: a dialogue, the models to run, the generation controls (built from dashboard/inputs.py's
CONTROLS), one output box per model that fills as its tokens come. Layout only: dashboard/handlers.py answers."""

import gradio as gr

from contract.untrusted import plain
from dashboard import handlers
from dashboard.handlers import CONCURRENCY, AppState
from dashboard.inputs import CONTROLS
from dashboard.runs import element_id


def control_widget(name: str):
    c = CONTROLS[name]
    if isinstance(c.default, bool):
        return gr.Checkbox(c.default, label=c.label)
    if name == "seed":
        return gr.Number(c.default, precision=0, minimum=c.low, maximum=c.high, label=c.label)
    return gr.Slider(c.low, c.high, value=c.default, step=c.step, label=c.label)


def build_compare_tab(state: AppState):
    """Returns the model picker (a link's `models=` sets it)."""
    served = state.runs
    keys, default = served.keys, served.default
    with gr.Row():
        with gr.Column(scale=3):
            picker = gr.Dropdown(choices=handlers.example_choices(state.data.shown_predictions),
                                 label="Example from the test set (fills the dialogue and its reference)",
                                 value=None, interactive=True)
            text = gr.Textbox(label="Dialogue", lines=12, placeholder="#Person1#: ...\n#Person2#: ...",
                              elem_id="dialogue")
            reference = gr.Textbox("", label="Reference summary (optional: gives each output's ROUGE)", lines=2)
        with gr.Column(scale=1):
            chosen = gr.CheckboxGroup([(served.label(m), m) for m in keys], value=default,
                                      label="Models to compare", elem_id="models")
            with gr.Accordion("Generation settings (defaults = evaluation's)", open=False):
                controls = {name: control_widget(name) for name in CONTROLS}
            button = gr.Button("Summarize with the chosen models", variant="primary", elem_id="summarize")
    notice = gr.Markdown()
    boxes, labels, columns = {}, {}, {}
    with gr.Row(equal_height=True):
        for m in keys:
            with gr.Column(visible=m in default, min_width=220) as columns[m]:
                boxes[m] = gr.Textbox(label=served.label(m), lines=6, max_lines=6, interactive=False,
                                      elem_id=f"out-{element_id(m)}")
                labels[m] = gr.Markdown(f"**{plain(served.label(m))}**")
    rouge_table = gr.Dataframe(label="ROUGE against your reference (fill in the reference box to see it)",
                               interactive=False)

    def compare(values: dict, request: gr.Request):  # Gradio passes a set of inputs as {widget: value}
        settings = {name: values[widget] for name, widget in controls.items()}
        for shown in handlers.stream_summaries(state, values[text], values[reference], settings, values[chosen],
                                               request):
            yield {rouge_table: shown.table, notice: shown.notice,
                   **{boxes[m]: shown.texts[m] for m in keys}, **{labels[m]: shown.labels[m] for m in keys}}

    button.click(compare, {text, reference, chosen, *controls.values()},
                 [rouge_table, notice, *boxes.values(), *labels.values()], api_visibility="private",
                 concurrency_limit=CONCURRENCY)
    chosen.change(lambda picked: [gr.update(visible=m in picked) for m in keys], chosen,
                  [columns[m] for m in keys], api_visibility="private")
    picker.change(lambda i: handlers.example_reference(state.data, i), picker, [text, reference],
                  api_visibility="private")
    return chosen
