"""The Metrics tab: the protocol, the summary table, the cost-vs-quality frontiers, ROUGE bars with CIs, paired
tests, parameters, cost and loss curves. Figures from dashboard/figures.py, numbers from dashboard/run_data.py."""

from typing import Optional

import gradio as gr

from contract.untrusted import plain
from dashboard import figures, frames, run_data, verdict_card
from dashboard.handlers import AppState
from scoring import cost as cost_model
from scoring import lenses, preferences
from scoring.rouge import PROTOCOLS
from scoring.verdict import protocol_sentence


def protocol_text(evaluation: Optional[dict]) -> str:
    if not evaluation:
        return ("**No evaluation yet.** Run `python -m training.evaluate --run <run folder>` to add ROUGE with "
                "confidence intervals; the training charts below are already real.")
    prompt = plain(repr(evaluation["decoding"]["prompt_template"]), limit=300)
    return (f"**Protocol.** {protocol_sentence(evaluation, prompt)} The lab's published figures (diamonds) were "
            "scored without sentence splitting, so their ROUGE-Lsum equals ROUGE-L.")


def tuning_text(data: run_data.RunData) -> str:
    """How the learning rates and seeds were chosen, in one paragraph."""
    swept = [data.label(m) for m in data.methods if m in data.sweeps]
    fixed = [data.label(m) for m in data.methods if m not in data.sweeps]
    parts = []
    if swept:
        first = next(iter(data.sweeps.values()))
        rates, rungs = ", ".join(f"{r:.3g}" for r in first["first_grid"]), ", ".join(map(str, first["rungs"]))
        parts.append(f"Learning rates of {', '.join(swept)}: swept on the validation split by successive halving "
                     f"(rates {rates} around each default, the grid extended at most twice when the best sat at its "
                     f"edge; scored at steps {rungs} by ROUGE-L of greedy summaries of up to "
                     f"{first['validation_dialogues']} validation dialogues: every rate to the first, the best "
                     "continued from their checkpoints). The default rate kept its place unless beaten beyond the "
                     "dialogues' paired bootstrap noise; the served model is the one that ran to the end.")
    if fixed:
        parts.append(f"{', '.join(fixed)}: at {'their' if len(fixed) > 1 else 'its'} preset rate (not tuned).")
    seeds = {1 + len(data.train[m].get("seeds", [])) for m in data.train}
    if seeds and max(seeds) > 1:
        parts.append(f"Seeds: {max(seeds)} per method; means and intervals are over seeds and dialogues (a two-level "
                     f"bootstrap), paired tests on each dialogue's mean over seeds; the app serves seed "
                     f"{next(iter(data.train.values()))['seed']}.")
    return "**Tuning.** " + " ".join(parts) if parts else ""


def protocol_line(data: run_data.RunData) -> Optional[str]:
    """The protocol, or "no evaluation yet"; nothing when the evaluation is there but broken (named above it)."""
    if data.evaluation is None and any(p.startswith("evaluation:") for p in data.problems):
        return None
    return protocol_text(data.evaluation) + ("\n\n" + tuning_text(data) if data.train else "")


def build_verdict(demo: gr.Blocks, state: AppState):
    """The answer and its chart, first; the people's verdict joins the sentences once there are enough votes; what
    each method costs at a volume and prices a person sets, with its chart and table."""
    data = state.data
    choice = verdict_card.choice_of(data)
    card = gr.Markdown(verdict_card.text(data, choice, prices=at_defaults(data, state.prices)[0]), elem_id="verdict")
    if choice is None:
        return
    cost = gr.Radio(list(verdict_card.COSTS), value=next(iter(verdict_card.COSTS)), label="Cost on the chart's x axis",
                    elem_id="verdict-cost")
    plot = gr.Plot(verdict_card.chart(data, choice), elem_id="plot-verdict")
    cost.change(lambda c: verdict_card.chart(data, choice, c), cost, plot, api_visibility="private")
    defaults = at_defaults(data, state.prices)
    inputs = build_cost_inputs(data, *defaults)
    with gr.Accordion("What each method costs at this volume: the chart and every stage", open=True):
        volume_plot = plot_or_line(verdict_card.volume_chart(data, choice, *defaults),
                                   "No cost at a volume: a price or the serving figures are missing.", "plot-volume")
        table = gr.Dataframe(verdict_card.cost_table(data, *defaults), interactive=False, elem_id="cost-table",
                             label="Device-hours per stage, energy, serving (cheapest form) and money")
        gr.Markdown(pricing_note(data), elem_id="cost-note")
    outputs = [card, table] + ([volume_plot] if isinstance(volume_plot, gr.Plot) else [])

    def priced(per_day, days, device_price, cpu_price):
        prices, volume = chosen(per_day, days, device_price, cpu_price)
        shown = [verdict_markdown(state, choice, prices, volume), verdict_card.cost_table(data, prices, volume)]
        return shown + ([verdict_card.volume_chart(data, choice, prices, volume)] if len(outputs) == 3 else [])

    for box in inputs:
        box.change(priced, inputs, outputs, api_visibility="private")
    if state.votes is not None:
        demo.load(lambda *values: verdict_markdown(state, choice, *chosen(*values)), inputs, card,
                  api_visibility="private")


def at_defaults(data: run_data.RunData, given: tuple = (None, None)) -> tuple[cost_model.Prices, cost_model.Volume]:
    """The prices given at start-up (--price_per_hour, --cpu_price_per_hour), else the listed ones; the default
    volume."""
    listed = cost_model.default_prices(data.train)
    device, cpu = given
    return cost_model.Prices(listed.device if device is None else device, listed.cpu if cpu is None else cpu), \
        cost_model.Volume()


def build_cost_inputs(data: run_data.RunData, prices: cost_model.Prices, volume: cost_model.Volume) -> list:
    """Volume and prices, prefilled with the defaults (given at start-up, else a listed price)."""
    device = " ".join(cost_model.run_device(data.train).split())[:60]  # a label is text, not Markdown
    with gr.Row(elem_id="cost-inputs"):
        return [gr.Number(volume.per_day, label="Summaries a day", minimum=0, elem_id="per-day"),
                gr.Number(volume.days, label="For how many days", minimum=0, elem_id="days"),
                gr.Number(prices.device, label=f"$ per device-hour ({device})", minimum=0, elem_id="device-price"),
                gr.Number(prices.cpu, label="$ per CPU-hour (int8 serving)", minimum=0, elem_id="cpu-price")]


def chosen(per_day, days, device_price, cpu_price) -> tuple[cost_model.Prices, cost_model.Volume]:
    """The page's inputs as prices and a volume (an empty price: unknown; an empty volume: the default's)."""
    default = cost_model.Volume()
    volume = cost_model.Volume(per_day or default.per_day, days or default.days)
    return cost_model.Prices(device_price, cpu_price), volume


def pricing_note(data: run_data.RunData) -> str:
    """Which figures are measured, which are priced, and from where."""
    listed = cost_model.listed_price(cost_model.run_device(data.train))
    cpu = cost_model.listed_price(cost_model.INT8_DEVICE)
    where = (f"the listed price of {listed.name}, ${listed.usd_per_hour:g}/h ({listed.source}, read {listed.read_on})"
             if listed else "no listed price for this device: give yours")
    return ("Measured: each stage's seconds on the run's device, the serving figures (`eval/serving.json`: "
            "latency at one request, throughput at a full batch) and the energy where codecarbon could read it "
            "(else estimated, as the table says; CO2 is energy x the country's average grid intensity). Priced: "
            f"device-hours x $ per device-hour; defaults: {where}; int8 serving at {cpu.name}, "
            f"${cpu.usd_per_hour:g}/h ({cpu.source}). A total is one tuning and training plus serving in the "
            "method's cheapest form; extra seeds and the evaluation are the comparison's own cost.")


def verdict_markdown(state: AppState, choice, prices: cost_model.Prices, volume: cost_model.Volume) -> str:
    """The verdict at these prices and volume, with the people's once there are enough counted votes."""
    votes = preferences.counted(state.votes.votes_frame()) if state.votes is not None else None
    if votes is None or len(votes) < preferences.MIN_VOTES:
        return verdict_card.text(state.data, choice, prices=prices, volume=volume)
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    return verdict_card.text(state.data, choice, preferences.ratings_table(votes, models), len(votes), prices, volume)


def plot_or_line(figure, message: str, elem_id: str):
    """A chart, or one line saying why there is none: no empty plot box."""
    if figure is None:
        return gr.Markdown(f"*{message}*", elem_id=elem_id)
    return gr.Plot(figure, elem_id=elem_id)


def build_metrics_tab(demo: gr.Blocks, state: AppState):
    data = state.data
    for problem in data.problems:
        gr.Markdown(f"> ⚠️ {plain(problem, limit=300)}")
    build_verdict(demo, state)
    labels = data.labels
    with gr.Accordion("Protocol and tuning: how these numbers were made", open=False):
        if text := protocol_line(data):
            gr.Markdown(text)
    with gr.Accordion("Summary table and methods at a glance", open=False):
        gr.Dataframe(frames.summary_table(data), label="Summary (headline protocol; ROUGE mean [95% CI])",
                     interactive=False)
        views = list(frames.CAPABILITY_VIEWS)
        view = gr.Radio(views, value=views[0], label="Methods at a glance")
        capabilities = gr.Dataframe(frames.capability_frame(data), interactive=False, elem_id="capabilities",
                                    label="What each method trains, how it is served, whether it merges into the base")
        view.change(lambda v: frames.capability_frame(data, v), view, capabilities, api_visibility="private")
    if data.evaluation:
        with gr.Accordion("Cost vs quality on every cost, and ROUGE per metric", open=False):
            bases = list(frames.COST_BASES)
            basis = gr.Radio(bases, value=bases[0], label="Training cost counts", elem_id="cost-basis")
            tradeoff = gr.Plot(figures.tradeoff_scatter(frames.tradeoff_frame(data), labels, basis.value),
                               elem_id="plot-tradeoff")
            redrawn = lambda b: figures.tradeoff_scatter(  # noqa: E731
                frames.tradeoff_frame(data, frames.COST_BASES[b]), labels, b)
            basis.change(redrawn, basis, tradeoff, api_visibility="private")
            protocol = gr.Radio(list(PROTOCOLS), value=data.evaluation["headline_protocol"],
                                label="ROUGE protocol")
            rouge_bars = figures.rouge_bars(frames.rouge_frame(data.evaluation), labels)
            rouge_plot = gr.Plot(rouge_bars, elem_id="plot-rouge")
            protocol.change(lambda p: figures.rouge_bars(frames.rouge_frame(data.evaluation, p), labels), protocol,
                            rouge_plot, api_visibility="private")
        with gr.Accordion("How sure the ranking is, and every paired test", open=False):
            if sentence := frames.ranking_sentence(data):
                gr.Markdown(sentence, elem_id="ranking-sentence")
                gr.Dataframe(frames.ranking_table(data), label="Each model's probability of each rank",
                             interactive=False, elem_id="ranking")
            gr.Dataframe(frames.comparisons_table(data.evaluation),
                         label="Paired tests over dialogues, every pair of models", interactive=False)
    forgetting = frames.retention_frame(data)
    kept = (data.evaluation or {}).get("retention") or {}
    if not forgetting.empty or kept.get("not_measured"):
        with gr.Accordion("What each method forgets (retention)", open=False):
            if kept.get("not_measured"):
                gr.Markdown(f"Not measured for every model: {plain(kept['not_measured'])}.", elem_id="retention-why")
            if not forgetting.empty:
                gr.Plot(figures.forgetting_chart(forgetting, labels, kept["task"]), elem_id="plot-forgetting")
    if data.sweeps:
        with gr.Accordion("Learning-rate sweeps", open=False):
            gr.Plot(figures.tuning_chart(frames.tuning_frame(data), labels), elem_id="plot-tuning")
    with gr.Accordion("int8 (CTranslate2) vs exact", open=False):
        gr.Markdown(frames.int8_line(data), elem_id="int8-line")
        if data.int8 is not None:
            gr.Dataframe(frames.int8_table(data), label="int8 (CTranslate2) vs exact: what int8 costs in quality",
                         interactive=False, elem_id="int8")
    with gr.Accordion("Parameters, training cost and loss curves", open=False):
        gr.Plot(figures.parameter_bars(frames.parameters_frame(data.train), labels), elem_id="plot-params")
        bases = list(frames.COST_BASES)
        cost_basis = gr.Radio(bases, value=bases[0], label="Training cost counts")
        cost = gr.Plot(figures.cost_bars(frames.cost_frame(data.train), labels), elem_id="plot-cost")
        cost_basis.change(lambda b: figures.cost_bars(frames.cost_frame(data.train, frames.COST_BASES[b]), labels),
                          cost_basis, cost, api_visibility="private")
        gr.Plot(figures.loss_curves(frames.loss_frame(data.train), labels), elem_id="plot-loss")
    if data.evaluation:
        with gr.Accordion("Where methods fail", open=False):
            build_failures_section(data)


def build_failures_section(data: run_data.RunData):
    """Where methods fail: ROUGE by slice, invented details and degenerate outputs, with intervals."""
    gr.Markdown("ROUGE-1 on slices of the test set (a slice marked *wide CI* is too small to "
                "tell methods apart), and how often each model's summaries invent a detail (a number, name or "
                f"speaker tag absent from the dialogue), repeat themselves, or are empty. {lenses.LIMITS}")
    labels = data.labels
    gr.Plot(figures.slice_multiples(frames.slices_frame(data.evaluation), labels), elem_id="plot-slices")
    gr.Plot(figures.failure_bars(frames.failures_frame(data.evaluation), labels), elem_id="plot-failures")
