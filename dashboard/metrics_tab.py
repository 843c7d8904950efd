"""The Metrics tab: the protocol, the summary table, the cost-vs-quality frontiers, ROUGE bars with CIs, paired
tests, parameters, cost and loss curves. Figures from dashboard/figures.py, numbers from dashboard/run_data.py."""

from typing import Optional

import gradio as gr

from dashboard import figures
from dashboard import run_data as rd
from dashboard.handlers import AppState
from dashboard.untrusted import plain
from scoring import lenses


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
            f"every pair of models: {b['paired_test']}. The lab's published figures (diamonds) were scored without "
            "sentence splitting, so their ROUGE-Lsum equals ROUGE-L.")


def tuning_text(data: rd.RunData) -> str:
    """How the learning rates and seeds were chosen, in one paragraph."""
    swept = [data.label(m) for m in data.methods if m in data.sweeps]
    fixed = [data.label(m) for m in data.methods if m not in data.sweeps]
    parts = []
    if swept:
        first = next(iter(data.sweeps.values()))
        rungs = first.get("rungs") or [first["steps_per_trial"]]
        parts.append(f"Learning rates of {', '.join(swept)}: swept on the validation split at the full budget "
                     f"(rates {', '.join(f'{r:.3g}' for r in first['first_grid'])} around each default, "
                     f"{first['steps_per_trial']} steps a trial, scored by ROUGE-L of greedy summaries of up to "
                     f"{first['validation_dialogues']} validation dialogues at steps {', '.join(map(str, rungs))}; a "
                     "trial behind the best score at a step stopped there, the default always ran to the end; the "
                     "grid extends at most twice when the best rate sits at its edge). The served model is the best "
                     "complete trial itself, so it is never worse than the default rate on validation.")
    if fixed:
        parts.append(f"{', '.join(fixed)}: at {'their' if len(fixed) > 1 else 'its'} preset rate (not tuned).")
    seeds = {1 + len(data.train[m].get("seeds", [])) for m in data.train}
    if seeds and max(seeds) > 1:
        parts.append(f"Seeds: {max(seeds)} per method; means and intervals are over seeds and dialogues (a two-level "
                     f"bootstrap), paired tests on each dialogue's mean over seeds; the app serves seed "
                     f"{next(iter(data.train.values()))['seed']}.")
    return "**Tuning.** " + " ".join(parts) if parts else ""


def protocol_line(data: rd.RunData) -> Optional[str]:
    """The protocol, or "no evaluation yet"; nothing when the evaluation is there but broken (named above it)."""
    if data.evaluation is None and any(p.startswith("evaluation:") for p in data.problems):
        return None
    return protocol_text(data.evaluation) + ("\n\n" + tuning_text(data) if data.train else "")


def build_metrics_tab(state: AppState):
    data = state.data
    for problem in data.problems:
        gr.Markdown(f"> ⚠️ {plain(problem, limit=300)}")
    if text := protocol_line(data):
        gr.Markdown(text)
    gr.Dataframe(rd.summary_table(data), label="Summary (headline protocol; ROUGE mean [95% CI])", interactive=False)
    view = gr.Radio(list(rd.CAPABILITY_VIEWS), value=next(iter(rd.CAPABILITY_VIEWS)), label="Methods at a glance")
    capabilities = gr.Dataframe(rd.capability_frame(data), interactive=False, elem_id="capabilities",
                                label="What each method trains, how it is served, whether it merges into the base")
    view.change(lambda v: rd.capability_frame(data, v), view, capabilities, api_visibility="private")
    protocol = gr.Radio(["per_row", "multi_reference"], value=(data.evaluation or {}).get("headline_protocol",
                        "per_row"), label="ROUGE protocol")
    labels = data.labels
    basis = gr.Radio(list(rd.COST_BASES), value=next(iter(rd.COST_BASES)), label="Training cost counts",
                     elem_id="cost-basis")
    tradeoff = gr.Plot(figures.tradeoff_scatter(rd.tradeoff_frame(data), labels, basis.value), elem_id="plot-tradeoff")
    gr.Plot(figures.tuning_chart(rd.tuning_frame(data), labels), elem_id="plot-tuning")
    rouge_plot = gr.Plot(figures.rouge_bars(rd.rouge_frame(data.evaluation), labels), elem_id="plot-rouge")
    protocol.change(lambda p: figures.rouge_bars(rd.rouge_frame(data.evaluation, p), labels), protocol, rouge_plot,
                    api_visibility="private")
    if sentence := rd.ranking_sentence(data):
        gr.Markdown(sentence, elem_id="ranking-sentence")
        gr.Dataframe(rd.ranking_table(data), label="How sure the ranking is: each model's probability of each rank",
                     interactive=False, elem_id="ranking")
    gr.Dataframe(rd.comparisons_table(data.evaluation), label="Paired tests over dialogues, every pair of models",
                 interactive=False)
    gr.Markdown(rd.int8_line(data), elem_id="int8-line")
    if data.int8 is not None:
        gr.Dataframe(rd.int8_table(data), label="int8 (CTranslate2) vs exact (PyTorch): what int8 costs in quality",
                     interactive=False, elem_id="int8")
    gr.Plot(figures.parameter_bars(rd.parameters_frame(data.train), labels), elem_id="plot-params")
    cost = gr.Plot(figures.cost_bars(rd.cost_frame(data.train), labels), elem_id="plot-cost")
    basis.change(lambda b: (figures.tradeoff_scatter(rd.tradeoff_frame(data, rd.COST_BASES[b]), labels, b),
                            figures.cost_bars(rd.cost_frame(data.train, rd.COST_BASES[b]), labels)),
                 basis, [tradeoff, cost], api_visibility="private")
    gr.Plot(figures.loss_curves(rd.loss_frame(data.train), labels), elem_id="plot-loss")
    build_failures_section(data)


def build_failures_section(data: rd.RunData):
    """Where methods fail: ROUGE by slice, invented details and degenerate outputs, with intervals."""
    gr.Markdown("## Where methods fail\nROUGE-1 on slices of the test set (a slice marked *wide CI* is too small to "
                "tell methods apart), and how often each model's summaries invent a detail (a number, name or "
                f"speaker tag absent from the dialogue), repeat themselves, or are empty. {lenses.LIMITS}")
    labels = data.labels
    gr.Plot(figures.slice_multiples(rd.slices_frame(data.evaluation), labels), elem_id="plot-slices")
    gr.Plot(figures.failure_bars(rd.failures_frame(data.evaluation), labels), elem_id="plot-failures")
