"""The Gradio page: layout and handlers. Figures come from dashboard.figures, numbers from dashboard.run_data."""

from dataclasses import dataclass
from typing import Optional

import gradio as gr
import pandas as pd

from dashboard import figures
from dashboard import run_data as rd
from dashboard.models import ServedModels
from dashboard.summarize import DEFAULT_PROMPT, InputError, Settings, summarize_all

try:  # on Hugging Face Spaces (ZeroGPU) this requests a GPU for the call; elsewhere a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

MODELS = rd.MODEL_ORDER
CONCURRENCY = 4  # requests in flight; model calls still take the models' lock one at a time


@dataclass
class AppState:
    data: rd.RunData
    served: ServedModels
    demo_notice: Optional[str] = None

    @property
    def prompt_template(self) -> str:
        if self.data.evaluation:
            return self.data.evaluation["decoding"].get("prompt_template", DEFAULT_PROMPT)
        full = self.data.train.get("full")
        return full["hyperparameters"].get("prompt_template", DEFAULT_PROMPT) if full else DEFAULT_PROMPT


def model_label(summary) -> str:
    name = rd.MODEL_LABELS[summary.model]
    if summary.error:
        return f"**{name}**: unavailable"
    how = "one batched call with the other shared-weight model" if summary.shared_call else "its own call"
    return f"**{name}** · {summary.seconds:.2f} s ({how}) · {summary.tokens} tokens"


def output_text(summary) -> str:
    if summary.error:
        return f"(unavailable) {summary.error}"
    return summary.text or "(no text: the model generated only special tokens)"


def reference_rouge(reference: str, summaries: dict) -> pd.DataFrame:
    from training.rouge import METRICS, Rouge  # the evaluation's exact ROUGE settings

    if not (reference or "").strip():
        return pd.DataFrame(columns=["model", *rd.METRIC_LABELS.values()])
    rouge = Rouge()
    rows = []
    for m in MODELS:
        s = summaries.get(m)
        if s and not s.error:
            scores = rouge.score(reference, s.text)
            rows.append({"model": rd.MODEL_LABELS[m], **{rd.METRIC_LABELS[k]: round(scores[k], 4) for k in METRICS}})
    return pd.DataFrame(rows)


def make_summarize(state: AppState):
    @gpu
    def summarize(text, reference="", max_new_tokens=200, num_beams=1, do_sample=False, temperature=1.0, top_p=1.0,
                  seed=0):
        settings = Settings(int(max_new_tokens), int(num_beams), bool(do_sample), float(temperature), float(top_p),
                            int(seed))
        try:
            summaries, truncated = summarize_all(state.served, text, settings, state.prompt_template)
        except InputError as e:
            raise gr.Error(str(e)) from e
        texts = [output_text(summaries[m]) for m in MODELS]
        labels = [model_label(summaries[m]) for m in MODELS]
        notice = ("⚠️ The dialogue is longer than the models read: it was **truncated to 512 tokens**."
                  if truncated else "")
        return (*texts, *labels, reference_rouge(reference, summaries), notice)

    return summarize


def example_choices(preds: Optional[pd.DataFrame], order: str = "test order") -> list[tuple[str, str]]:
    if preds is None or preds.empty:
        return []
    key = {"full vs LoRA disagreement": ("full_vs_lora", False), "dialogue length": ("dialogue_chars", False),
           "test order": (None, True)}[order]
    frame = preds if key[0] is None else preds.sort_values(key[0], ascending=key[1], kind="stable")
    return [(f"{r.id} · {r.dialogue_chars} chars · |ΔR1 full−LoRA| {r.full_vs_lora:.3f} · "
             f"{r.dialogue[:60].replace(chr(10), ' ')}…", r.id) for r in frame.itertuples()]


def header(state: AppState) -> str:
    run = state.data.run
    lines = [f"# Dialogue summarization: base vs full fine-tune vs LoRA",
             f"Run **{state.data.folder.name}** · preset `{run['preset']}` · base model `{run['base_model']}` · "
             f"data `{run['data_source']}` · device **{state.served.describe()}**"]
    if state.demo_notice:
        lines.append(f"> {state.demo_notice}")
    for model, why in state.served.errors.items():
        lines.append(f"> ⚠️ **{rd.MODEL_LABELS[model]} is unavailable**: {why}")
    return "\n\n".join(lines)


def protocol_text(evaluation: Optional[dict]) -> str:
    if not evaluation:
        return ("**No evaluation yet.** Run `python -m training.evaluate --run <run folder>` to add ROUGE with "
                "confidence intervals; the training charts below are already real.")
    d, r, b = evaluation["decoding"], evaluation["rouge"], evaluation["bootstrap"]
    return (f"**Protocol.** {evaluation['n_dialogues']} dialogues / {evaluation['n_references']} references of the "
            f"`{evaluation['split']}` split. Headline: `{evaluation['headline_protocol']}` (each row against its own "
            f"reference, as the lab). Decoding: greedy (do_sample={d['do_sample']}, beams={d['num_beams']}), "
            f"max_new_tokens={d['max_new_tokens']}. ROUGE: {r.get('package', 'rouge_score')}, stemmer "
            f"{'on' if r['use_stemmer'] else 'off'}, F-measure; rougeLsum sentences: {r['sentence_splitter']}. "
            f"95% CI: bootstrap over dialogues, {b['resamples']} resamples (seed {b['seed']}); paired tests: "
            f"{b['paired_test']}. The lab's published figures (diamonds) were scored without sentence splitting, so "
            "their ROUGE-Lsum equals ROUGE-L.")


def comparisons_table(evaluation: Optional[dict]) -> pd.DataFrame:
    if not evaluation:
        return pd.DataFrame()
    rows = evaluation["comparisons"][evaluation["headline_protocol"]]
    return pd.DataFrame([{"comparison": f"{c['a']} − {c['b']}", "metric": rd.METRIC_LABELS.get(c["metric"]),
                          "mean difference": round(c["mean_difference"], 4), "p-value": round(c["p_value"], 4)}
                         for c in rows])


def build_compare_tab(state: AppState):
    preds = state.data.predictions
    with gr.Row():
        with gr.Column(scale=3):
            picker = gr.Dropdown(choices=example_choices(preds), label="Example from the test set (fills the "
                                 "dialogue and its reference)", value=None, interactive=True)
            text = gr.Textbox(label="Dialogue", lines=12, placeholder="#Person1#: ...\n#Person2#: ...",
                              elem_id="dialogue")
            reference = gr.Textbox("", label="Reference summary (optional: gives each output's ROUGE)", lines=2)
        with gr.Column(scale=1):
            with gr.Accordion("Generation settings (defaults = evaluation's)", open=False):
                max_new = gr.Slider(1, 512, value=200, step=1, label="max new tokens")
                beams = gr.Slider(1, 8, value=1, step=1, label="beams")
                sample = gr.Checkbox(False, label="sample")
                temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature (sampling)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (sampling)")
                seed = gr.Number(0, precision=0, label="seed")
            button = gr.Button("Summarize with all three models", variant="primary")
    notice = gr.Markdown()
    labels, outputs = [], []
    with gr.Row(equal_height=True):
        for m in MODELS:
            with gr.Column():
                outputs.append(gr.Textbox(label=rd.MODEL_LABELS[m], lines=6, max_lines=6, interactive=False,
                                          elem_id=f"out-{m}"))
                labels.append(gr.Markdown(f"**{rd.MODEL_LABELS[m]}**"))
    rouge_table = gr.Dataframe(label="ROUGE against your reference (fill in the reference box to see it)",
                               interactive=False)
    button.click(make_summarize(state), [text, reference, max_new, beams, sample, temperature, top_p, seed],
                 [*outputs, *labels, rouge_table, notice], api_name="summarize", concurrency_limit=CONCURRENCY)

    def fill(example_id):
        if preds is None or not example_id:
            return gr.update(), gr.update()
        row = preds[preds["id"] == example_id].iloc[0]
        return row["dialogue"], row["references"][0]

    picker.change(fill, picker, [text, reference], api_visibility="private")


def build_metrics_tab(state: AppState):
    data = state.data
    if data.problems:
        gr.Markdown("\n\n".join(f"> ⚠️ {p}" for p in data.problems))
    gr.Markdown(protocol_text(data.evaluation))
    gr.Dataframe(rd.summary_table(data), label="Summary (headline protocol; ROUGE mean [95% CI])", interactive=False)
    protocol = gr.Radio(["per_row", "multi_reference"], value=(data.evaluation or {}).get("headline_protocol",
                        "per_row"), label="ROUGE protocol")
    rouge_plot = gr.Plot(figures.rouge_bars(rd.rouge_frame(data.evaluation)), elem_id="plot-rouge")
    protocol.change(lambda p: figures.rouge_bars(rd.rouge_frame(data.evaluation, p)), protocol, rouge_plot,
                    api_visibility="private")
    gr.Dataframe(comparisons_table(data.evaluation), label="Paired tests over dialogues", interactive=False)
    gr.Plot(figures.parameter_bars(rd.parameters_frame(data.train)), elem_id="plot-params")
    gr.Plot(figures.cost_bars(rd.cost_frame(data.train)), elem_id="plot-cost")
    gr.Plot(figures.loss_curves(rd.loss_frame(data.train)), elem_id="plot-loss")
    gr.Plot(figures.tradeoff_scatter(rd.tradeoff_frame(data)), elem_id="plot-tradeoff")


def example_details(preds: pd.DataFrame, example_id: Optional[str]):
    if preds is None or not example_id:
        return "", "", "", "", "", pd.DataFrame()
    row = preds[preds["id"] == example_id].iloc[0]
    refs = "\n".join(f"{i}. {r}" for i, r in enumerate(row["references"], 1))
    scores = pd.DataFrame([{"model": rd.MODEL_LABELS[m], **{label: round(row["rouge"][m][k], 4)
                                                             for k, label in rd.METRIC_LABELS.items()}}
                           for m in MODELS if m in row["rouge"]])
    texts = [row[m] or "(no text: the model generated only special tokens)" for m in MODELS]
    return row["dialogue"], refs, *texts, scores


def build_examples_tab(state: AppState):
    preds = state.data.predictions
    if preds is None:
        gr.Markdown("**No test predictions yet.** `python -m training.evaluate --run <run folder>` writes them.")
        return
    order = gr.Radio(["test order", "full vs LoRA disagreement", "dialogue length"], value="full vs LoRA disagreement",
                     label="Sort by")
    choices = example_choices(preds, "full vs LoRA disagreement")
    picker = gr.Dropdown(choices=choices, value=choices[0][1], label=f"Test dialogue ({len(preds)})")
    with gr.Row():
        dialogue = gr.Textbox(label="Dialogue", lines=10, interactive=False)
        refs = gr.Textbox(label="References", lines=10, interactive=False)
    with gr.Row():
        outs = [gr.Textbox(label=rd.MODEL_LABELS[m], lines=4, max_lines=6, interactive=False) for m in MODELS]
    scores = gr.Dataframe(label="Per-example ROUGE F1 (each metric averaged over the references)",
                          interactive=False)
    details = [dialogue, refs, *outs, scores]
    def resort(o):
        choices = example_choices(preds, o)
        return gr.update(choices=choices, value=choices[0][1])

    order.change(resort, order, picker, api_visibility="private")
    picker.change(lambda i: example_details(preds, i), picker, details, api_visibility="private")
    return picker, details


def build_demo(state: AppState) -> gr.Blocks:
    with gr.Blocks(title="FLAN-T5 dialogue summarization: base vs full vs LoRA") as demo:
        gr.Markdown(header(state))
        with gr.Tab("Compare"):
            build_compare_tab(state)
        with gr.Tab("Metrics"):
            build_metrics_tab(state)
        with gr.Tab("Examples"):
            loaded = build_examples_tab(state)
        if loaded:
            picker, details = loaded
            demo.load(lambda i: example_details(state.data.predictions, i), picker, details, api_visibility="private")
    return demo
