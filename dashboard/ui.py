"""The Gradio page: layout and handlers. Figures come from dashboard.figures, numbers from dashboard.run_data."""

import time
from dataclasses import dataclass
from typing import Optional

import gradio as gr
import pandas as pd

from dashboard import figures
from dashboard import run_data as rd
from dashboard.votes import VoteStore
from dashboard.models import ServedModels
from dashboard.summarize import DEFAULT_MODELS, DEFAULT_PROMPT, InputError, Settings, check_text, submit

try:  # on Hugging Face Spaces (ZeroGPU) this requests a GPU for the call; elsewhere a no-op
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

API_FIRST = list(DEFAULT_MODELS)  # /summarize returns these three texts first, then their labels: a kept contract
CONCURRENCY = 16  # requests in flight: they wait together for the models' one worker, which batches them
STREAM_EVERY = 0.2  # seconds between two partial updates sent to the page
NOT_IN_RUN = "(not in this run)"


@dataclass
class AppState:
    data: rd.RunData
    served: ServedModels
    demo_notice: Optional[str] = None
    votes: Optional[VoteStore] = None

    @property
    def prompt_template(self) -> str:
        if self.data.evaluation:
            return self.data.evaluation["decoding"].get("prompt_template", DEFAULT_PROMPT)
        first = next(iter(self.data.train.values()), None)
        return first["hyperparameters"].get("prompt_template", DEFAULT_PROMPT) if first else DEFAULT_PROMPT

    @property
    def models(self) -> list[str]:
        return self.served.models

    @property
    def extra_models(self) -> list[str]:
        """The run's models beyond base/full/lora: /summarize returns them after its original outputs."""
        return [m for m in self.models if m not in API_FIRST]

    def label(self, model: str) -> str:
        return self.served.label(model) if model in self.models else rd.MODEL_LABELS.get(model, model)


def refuse(message: str) -> gr.Error:
    """An expected refusal: shown to the user, no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def model_label(summary, name: str) -> str:
    if summary.error:
        return f"**{name}**: unavailable"
    how = "one batched call shared with other rows" if summary.shared_call else "its own call"
    return f"**{name}** · {summary.seconds:.2f} s ({how}) · {summary.tokens} tokens"


def output_text(summary) -> str:
    if summary.error:
        return f"(unavailable) {summary.error}"
    return summary.text or "(no text: the model generated only special tokens)"


def reference_rouge(reference: str, summaries: dict, labels: dict) -> pd.DataFrame:
    from training.rouge import METRICS, Rouge  # the evaluation's exact ROUGE settings

    if not reference:
        return pd.DataFrame(columns=["model", *rd.METRIC_LABELS.values()])
    rouge = Rouge()
    return pd.DataFrame([{"model": labels[m], **{rd.METRIC_LABELS[k]: round(v, 4)
                                                 for k, v in rouge.score(reference, s.text).items() if k in METRICS}}
                         for m, s in summaries.items() if not s.error])


def start_request(state: AppState, text, reference, max_new_tokens, num_beams, do_sample, temperature, top_p, seed,
                  models, on_tokens=None):
    """Validate every input (a clear gr.Error for each mistake) and queue the request: (request, the checked
    reference, the truncation notice)."""
    try:
        settings = Settings.from_inputs(max_new_tokens, num_beams, do_sample, temperature, top_p, seed)
        reference = check_text(reference, "reference", required=False)
        request = submit(state.served, text, settings, state.prompt_template, models, on_tokens)
    except InputError as e:
        raise refuse(str(e)) from None
    notice = ("⚠️ The dialogue is longer than the models read: it was **truncated to 512 tokens**."
              if request.truncated else "")
    return request, reference, notice


def run_models(state: AppState, text, reference, *settings_and_models):
    """start_request, then wait: (summaries, ROUGE table against the reference, notice)."""
    request, reference, notice = start_request(state, text, reference, *settings_and_models)
    summaries = request.result()
    return summaries, reference_rouge(reference, summaries, {m: state.label(m) for m in summaries}), notice


def make_summarize(state: AppState):
    """The Compare button, also the `/summarize` API. A generator: every chosen model's box fills as its tokens
    come; the last value (what API clients get) holds base, full and lora texts, their labels, the ROUGE table and
    the notice (the original contract), then each further method's text and label."""
    order = API_FIRST + state.extra_models

    def pack(texts, labels, table, notice):
        extras = [v for m in state.extra_models for v in (texts[m], labels[m])]
        return (*[texts[m] for m in API_FIRST], *[labels[m] for m in API_FIRST], table, notice, *extras)

    @gpu
    def summarize(text, reference="", max_new_tokens=200, num_beams=1, do_sample=False, temperature=1.0, top_p=1.0,
                  seed=0, models=None):
        wanted = [m for m in API_FIRST if m in state.models] if models is None else models
        latest = {}  # model -> its token ids so far, written by the worker; decoded here a few times a second
        request, reference, notice = start_request(state, text, reference, max_new_tokens, num_beams, do_sample,
                                                   temperature, top_p, seed, wanted, latest.__setitem__)
        chosen = request.models
        texts = {m: "" for m in order}
        labels = {m: f"**{state.label(m)}** {NOT_IN_RUN if m not in state.models else '(not selected)'}"
                  for m in order}
        labels.update({m: f"**{state.label(m)}** · generating…" for m in chosen})
        for m, s in request.unavailable.items():
            texts[m], labels[m] = output_text(s), model_label(s, state.label(m))
        empty = reference_rouge("", {}, {})
        decode = state.served.tokenizer.decode
        shown = {}
        while not request.future.done():
            time.sleep(STREAM_EVERY if shown else 0.02)  # the first text as soon as there is one
            now = {m: len(ids) for m, ids in list(latest.items())}
            if now != shown:
                shown = now
                for m in now:
                    texts[m] = decode(latest[m][:now[m]], skip_special_tokens=True).strip()
                yield pack(texts, labels, empty, notice)
        summaries = request.result()
        for m, s in summaries.items():
            texts[m], labels[m] = output_text(s), model_label(s, state.label(m))
        table = reference_rouge(reference, summaries, {m: state.label(m) for m in chosen})
        yield pack(texts, labels, table, notice)

    return summarize


def final(outputs):
    """The last value of a streaming handler: what an API client receives."""
    *_, last = outputs
    return last


def make_summarize_json(state: AppState):
    def summarize_all(text: str) -> dict:
        """Every model of the run on one dialogue (evaluation's greedy settings): {model: {summary, seconds,
        tokens}}; an unavailable model gets {"error": why}."""
        summaries, _, _ = run_models(state, text, "", 200, 1, False, 1.0, 1.0, 0, state.models)
        return {m: ({"error": s.error} if s.error else {"summary": s.text, "seconds": round(s.seconds, 4),
                                                         "tokens": s.tokens}) for m, s in summaries.items()}

    return summarize_all


SORTS = {"disagreement between methods": "spread", "dialogue length": "dialogue_chars", "test order": None}


def example_choices(preds: Optional[pd.DataFrame], order: str = "test order") -> list[tuple[str, str]]:
    if preds is None or preds.empty:
        return []
    key = SORTS[order]
    frame = preds if key is None else preds.sort_values(key, ascending=False, kind="stable")
    return [(f"{r.id} · {r.dialogue_chars} chars · ROUGE-1 range across methods {r.spread:.3f} · "
             f"{r.dialogue[:60].replace(chr(10), ' ')}…", r.id) for r in frame.itertuples()]


def header(state: AppState) -> str:
    run = state.data.run
    lines = ["# Dialogue summarization: which way of fine-tuning FLAN-T5 is worth it?",
             f"Run **{state.data.folder.name}** · preset `{run['preset']}` · base model `{run['base_model']}` · "
             f"data `{run['data_source']}` · {len(state.data.methods)} methods: "
             f"{', '.join(state.label(m) for m in state.data.methods)} · device **{state.served.describe()}**"]
    if state.demo_notice:
        lines.append(f"> {state.demo_notice}")
    for model, why in state.served.errors.items():
        lines.append(f"> ⚠️ **{state.label(model)} is unavailable**: {why}")
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
            f"95% CI: bootstrap over dialogues, {b['resamples']} resamples (seed {b['seed']}); paired tests over "
            f"every pair of models: {b['paired_test']}. The lab's published figures (diamonds) were scored without sentence splitting, so "
            "their ROUGE-Lsum equals ROUGE-L.")


def comparisons_table(evaluation: Optional[dict]) -> pd.DataFrame:
    if not evaluation:
        return pd.DataFrame()
    rows = evaluation["comparisons"][evaluation["headline_protocol"]]
    return pd.DataFrame([{"comparison": f"{c['a']} − {c['b']}", "metric": rd.METRIC_LABELS.get(c["metric"]),
                          "mean difference": round(c["mean_difference"], 4), "p-value": round(c["p_value"], 4),
                          "p (Holm, all pairs)": round(c["p_holm"], 4) if "p_holm" in c else None}
                         for c in rows])


def build_compare_tab(state: AppState):
    preds = state.data.predictions
    default = [m for m in API_FIRST if m in state.models]
    with gr.Row():
        with gr.Column(scale=3):
            picker = gr.Dropdown(choices=example_choices(preds), label="Example from the test set (fills the "
                                 "dialogue and its reference)", value=None, interactive=True)
            text = gr.Textbox(label="Dialogue", lines=12, placeholder="#Person1#: ...\n#Person2#: ...",
                              elem_id="dialogue")
            reference = gr.Textbox("", label="Reference summary (optional: gives each output's ROUGE)", lines=2)
        with gr.Column(scale=1):
            chosen = gr.CheckboxGroup([(state.label(m), m) for m in state.models], value=default,
                                      label="Models to compare", elem_id="models")
            with gr.Accordion("Generation settings (defaults = evaluation's)", open=False):
                max_new = gr.Slider(1, 512, value=200, step=1, label="max new tokens")
                beams = gr.Slider(1, 8, value=1, step=1, label="beams")
                sample = gr.Checkbox(False, label="sample")
                temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature (sampling)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (sampling)")
                seed = gr.Number(0, precision=0, label="seed")
            button = gr.Button("Summarize with the chosen models", variant="primary", elem_id="summarize")
    notice = gr.Markdown()
    boxes, labels, columns = {}, {}, {}
    with gr.Row(equal_height=True):
        for m in state.models:
            with gr.Column(visible=m in default, min_width=220) as columns[m]:
                boxes[m] = gr.Textbox(label=state.label(m), lines=6, max_lines=6, interactive=False,
                                      elem_id=f"out-{m}")
                labels[m] = gr.Markdown(f"**{state.label(m)}**")
    missing = {m: (gr.Textbox(visible=False), gr.Markdown(visible=False)) for m in API_FIRST if m not in state.models}
    rouge_table = gr.Dataframe(label="ROUGE against your reference (fill in the reference box to see it)",
                               interactive=False)
    box = {**{m: b for m, (b, _) in missing.items()}, **boxes}
    label = {**{m: lb for m, (_, lb) in missing.items()}, **labels}
    outputs = [*[box[m] for m in API_FIRST], *[label[m] for m in API_FIRST], rouge_table, notice,
               *[c for m in state.extra_models for c in (box[m], label[m])]]
    button.click(make_summarize(state), [text, reference, max_new, beams, sample, temperature, top_p, seed, chosen],
                 outputs, api_name="summarize", concurrency_limit=CONCURRENCY)
    chosen.change(lambda picked: [gr.update(visible=m in picked) for m in state.models], chosen,
                  [columns[m] for m in state.models], api_visibility="private")
    gr.api(make_summarize_json(state), api_name="summarize_all", concurrency_limit=CONCURRENCY)

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
    labels = data.labels
    gr.Plot(figures.tradeoff_scatter(rd.tradeoff_frame(data), labels), elem_id="plot-tradeoff")
    rouge_plot = gr.Plot(figures.rouge_bars(rd.rouge_frame(data.evaluation), labels), elem_id="plot-rouge")
    protocol.change(lambda p: figures.rouge_bars(rd.rouge_frame(data.evaluation, p), labels), protocol, rouge_plot,
                    api_visibility="private")
    gr.Dataframe(comparisons_table(data.evaluation), label="Paired tests over dialogues, every pair of models",
                 interactive=False)
    gr.Plot(figures.parameter_bars(rd.parameters_frame(data.train), labels), elem_id="plot-params")
    gr.Plot(figures.cost_bars(rd.cost_frame(data.train), labels), elem_id="plot-cost")
    gr.Plot(figures.loss_curves(rd.loss_frame(data.train), labels), elem_id="plot-loss")


def example_details(data: rd.RunData, example_id: Optional[str]):
    models = [m for m in data.models if data.predictions is not None and m in data.predictions]
    if data.predictions is None or not example_id:
        return "", "", *["" for _ in models], pd.DataFrame()
    row = data.predictions[data.predictions["id"] == example_id].iloc[0]
    refs = "\n".join(f"{i}. {r}" for i, r in enumerate(row["references"], 1))
    scores = pd.DataFrame([{"model": data.label(m), **{label: round(row["rouge"][m][k], 4)
                                                       for k, label in rd.METRIC_LABELS.items()}}
                           for m in models if m in row["rouge"]])
    texts = [row[m] or "(no text: the model generated only special tokens)" for m in models]
    return row["dialogue"], refs, *texts, scores


def build_examples_tab(state: AppState):
    data = state.data
    preds = data.predictions
    if preds is None:
        gr.Markdown("**No test predictions yet.** `python -m training.evaluate --run <run folder>` writes them.")
        return
    order = gr.Radio(list(SORTS), value="disagreement between methods", label="Sort by")
    choices = example_choices(preds, "disagreement between methods")
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
        choices = example_choices(preds, o)
        return gr.update(choices=choices, value=choices[0][1])

    order.change(resort, order, picker, api_visibility="private")
    picker.change(lambda i: example_details(data, i), picker, details, api_visibility="private")
    return picker, details


def build_demo(state: AppState) -> gr.Blocks:
    from dashboard import vote_tab  # imported here: it builds on this module's AppState and handlers
    with gr.Blocks(title="FLAN-T5 dialogue summarization: fine-tuning methods compared") as demo:
        gr.Markdown(header(state))
        with gr.Tab("Compare"):
            build_compare_tab(state)
        if state.votes is not None:
            with gr.Tab("Vote"):
                vote_tab.build_vote_tab(state)
        with gr.Tab("Metrics"):
            if state.votes is not None:
                vote_tab.build_ratings_section(demo, state)
            build_metrics_tab(state)
        with gr.Tab("Examples"):
            loaded = build_examples_tab(state)
        if loaded:
            picker, details = loaded
            demo.load(lambda i: example_details(state.data, i), picker, details, api_visibility="private")
    return demo
