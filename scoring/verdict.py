"""The answer first: which method is worth it, in two or three sentences generated from a run's own numbers (its
eval/metrics.json and each method's metrics.json). The Metrics tab shows them with their chart
(dashboard/verdict_card.py); the model card that `python -m training.publish` writes carries the same sentences.

The sentences claim only what the intervals support: "the best" is the highest mean, with its probability of rank
1 when the evaluation has it; a cheaper method is offered only when the paired test (Holm-adjusted over all pairs,
else the 95% intervals) cannot tell it from the best.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from scoring import cost
from scoring.stats import POWER

ALPHA = 0.05  # a paired difference with (Holm-adjusted) p at or above this is "not worse beyond noise"


@dataclass
class Choice:
    """The verdict's numbers: the best method, the cheapest one not worse than it beyond noise, and how sure."""
    best: str
    cheapest: str
    p_best: Optional[float]
    tied: list
    frame: pd.DataFrame  # per method (index): rouge1, ci_low, ci_high, trainable, train_seconds, peak_memory_mib
    candidates: list     # the best and every method not worse than it beyond noise


def method_frame(evaluation: dict, train: dict) -> pd.DataFrame:
    """Per evaluated method: its headline ROUGE-1 with interval and its costs."""
    scores = evaluation["scores"][evaluation["headline_protocol"]]
    rows = [{"method": name, "rouge1": scores[name]["rouge1"]["mean"], "ci_low": scores[name]["rouge1"]["ci_low"],
             "ci_high": scores[name]["rouge1"]["ci_high"], "trainable": m["parameters"]["trainable"],
             "train_seconds": m["cost"]["train_seconds"], "peak_memory_mib": m["cost"]["peak_memory_bytes"] / 2**20}
            for name, m in train.items() if name in scores]
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def not_worse(evaluation: dict, best: str, model: str, frame: pd.DataFrame) -> bool:
    """`model` cannot be told from `best` on ROUGE-1: the paired test's Holm-adjusted p >= ALPHA, or, without a
    paired test for the pair, its 95% interval reaches the best's."""
    for c in evaluation.get("comparisons", {}).get(evaluation["headline_protocol"], []):
        if c["metric"] == "rouge1" and {c["a"], c["b"]} == {best, model}:
            return c.get("p_holm", c["p_value"]) >= ALPHA
    return frame.loc[model, "ci_high"] >= frame.loc[best, "ci_low"]


def choose(evaluation: Optional[dict], train: dict) -> Optional[Choice]:
    """None when there is nothing to judge (no evaluation, or no evaluated method)."""
    frame = method_frame(evaluation, train) if evaluation else pd.DataFrame()
    if frame.empty:
        return None
    best = str(frame["rouge1"].idxmax())
    candidates = [m for m in frame.index if m == best or not_worse(evaluation, best, m, frame)]
    cheapest = min(candidates, key=lambda m: (frame.loc[m, "trainable"], frame.loc[m, "train_seconds"]))
    ranking = evaluation.get("ranking") or {}
    tied = [m for m in ranking.get("tied_at_top", []) if m != best and m in frame.index]
    return Choice(best, cheapest, ranking.get("p_best", {}).get(best), tied, frame, candidates)


def protocol_sentence(evaluation: dict, prompt: str) -> str:
    """How the figures were made, in one paragraph (the Metrics tab and the model card): the test set, decoding,
    ROUGE, the intervals and the paired tests. `prompt` is the prompt template as the caller shows outside text."""
    d, r, b = evaluation["decoding"], evaluation["rouge"], evaluation["bootstrap"]
    return (f"{evaluation['n_dialogues']} dialogues / {evaluation['n_references']} references of the "
            f"`{evaluation['split']}` split. Decoding: greedy (do_sample={d['do_sample']}, beams={d['num_beams']}), "
            f"at most {d['max_new_tokens']} new tokens, inputs cut at {d['max_source_length']} tokens, prompt "
            f"{prompt}. ROUGE: {r.get('package', 'rouge_score')}, stemmer {'on' if r['use_stemmer'] else 'off'}, "
            f"F-measure; rougeLsum sentences: {r['sentence_splitter']}. Headline: `{evaluation['headline_protocol']}` "
            f"(each reference on its own, averaged over rows, as the lab). 95% intervals: bootstrap "
            f"({b.get('unit', 'dialogue')}), {b['resamples']} resamples (seed {b['seed']}); paired tests over every "
            f"pair of models: {b['paired_test']}.")


def with_base(frame: pd.DataFrame, base: dict) -> pd.DataFrame:
    """The methods' frame with the base's ROUGE-1 interval as one more row (for not_worse's fallback)."""
    interval = {"rouge1": base["mean"], "ci_low": base["ci_low"], "ci_high": base["ci_high"]}
    row = pd.DataFrame([interval], index=["base"])
    return pd.concat([frame, row])


def times(a: float, b: float) -> str:
    return f"{a / b:,.1f}×" if b else "—"


def sentences(evaluation: Optional[dict], choice: Optional[Choice], label: Callable[[str], str],
              people: str = "", at_volume: str = "") -> str:
    """The verdict's text (Markdown); `label(model)` names a model as the page or card shows it."""
    if choice is None:
        return ("**No verdict yet**: this run has no evaluation. `python -m training.evaluate --run <run folder>` "
                "scores every method; the training figures are already real.")
    f, bold = choice.frame, (lambda m: f"**{label(m)}**")
    best = f.loc[choice.best]
    base = evaluation["scores"][evaluation["headline_protocol"]].get("base", {}).get("rouge1")
    sure = f", the best model with probability {choice.p_best:.2f}" if choice.p_best is not None else ""
    tied = f" (tied within the intervals with {', '.join(label(m) for m in choice.tied)})" if choice.tied else ""
    score = f"ROUGE-1 {best['rouge1']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}]"
    if base and not_worse(evaluation, choice.best, "base", with_base(f, base)):
        first = (f"**No method beats the base beyond the paired test's noise here**: the best, {bold(choice.best)}, "
                 f"scores {score}; the base without fine-tuning {base['mean']:.3f}.")
    else:
        first = (f"{bold(choice.best)} writes the best summaries: {score}{sure}{tied}"
                 + (f"; the base without fine-tuning scores {base['mean']:.3f}." if base else "."))
    if len(f) == 1:
        second = "It is the only evaluated method of this run."
    elif choice.cheapest == choice.best:
        second = "No cheaper method comes within the paired test's noise of it: it is also the one to pick."
    else:
        cheap = f.loc[choice.cheapest]
        second = (f"{bold(choice.cheapest)} is not worse beyond the paired test's noise (ROUGE-1 "
                  f"{cheap['rouge1']:.3f}) at {cheap['trainable']:,.0f} trainable parameters; the step up to "
                  f"{bold(choice.best)} costs {times(best['trainable'], cheap['trainable'])} the parameters, "
                  f"{times(best['train_seconds'], cheap['train_seconds'])} the training time and "
                  f"{times(best['peak_memory_mib'], cheap['peak_memory_mib'])} the peak memory.")
    parts = (first, second, at_volume, how_many(evaluation, choice, label), people)
    return "### The verdict\n\n" + " ".join(s for s in parts if s)


def how_many(evaluation: dict, choice: Choice, label: Callable[[str], str]) -> str:
    """When the runner-up cannot be told from the best: how many test dialogues a paired test would need to tell
    them apart (80% power, a difference of the size measured); '' when they are told apart, or it is unknown."""
    f = choice.frame
    others = f.drop(index=choice.best)
    if others.empty:
        return ""
    runner = str(others["rouge1"].idxmax())
    if not not_worse(evaluation, choice.best, runner, f):
        return ""
    row = next((c for c in evaluation.get("comparisons", {}).get(evaluation["headline_protocol"], [])
                if c["metric"] == "rouge1" and {c["a"], c["b"]} == {choice.best, runner}), None)
    needed, used = (row or {}).get("dialogues_needed"), evaluation.get("n_dialogues")
    if not needed or not used:
        return ""
    more = "" if needed > used else " (fewer than it used: the pair is within the Holm-adjusted noise of all pairs)"
    return (f"To tell {label(choice.best)} from {label(runner)} apart, about {needed:,} test dialogues would be "
            f"needed at {POWER:.0%} power for a difference of the size measured; this run used {used:,}{more}.")


def people_sentence(ratings: Optional[pd.DataFrame], n_votes: int, choice: Optional[Choice],
                    label: Callable[[str], str]) -> str:
    """What the blind votes say next to ROUGE (ratings: model, strength, ci_low, ci_high, strongest first);
    '' without them."""
    if choice is None or ratings is None or ratings.empty:
        return ""
    top = ratings.iloc[0]
    if top["model"] == choice.best:
        return f"The people's verdict ({n_votes} blind votes) agrees: {label(top['model'])} leads it."
    overlap = len(ratings) > 1 and ratings.iloc[1]["ci_high"] >= top["ci_low"]
    return (f"The people's verdict ({n_votes} blind votes) puts {label(top['model'])} first"
            + (", though its interval overlaps the next one's." if overlap else ", beyond its interval:")
            + " ROUGE and readers disagree here.")


def usd(amount: float) -> str:
    """Dollars a reader takes in at once: whole dollars from $100, cents from $1, two significant figures below."""
    if amount >= 100:
        return f"${amount:,.0f}"
    if amount >= 1 or amount <= 0:
        return f"${amount:,.2f}"
    return f"${amount:.{max(2, 1 - math.floor(math.log10(amount)))}f}"  # two significant figures


def cheapest_at(choice: Choice, totals: pd.DataFrame) -> Optional[str]:
    """The method within noise of the best that costs least in all at the volume; None when none is priced."""
    priced = [m for m in choice.candidates if m in totals.index and pd.notna(totals.loc[m, "total_usd"])]
    return min(priced, key=lambda m: totals.loc[m, "total_usd"]) if priced else None


def nearest_switch(choice: Choice, totals: pd.DataFrame, cheapest: str, volume: cost.Volume,
                   label: Callable[[str], str]) -> str:
    """Where another method within noise becomes the cheaper one (the break-even nearest this volume); ''."""
    switches = []
    for other in choice.candidates:
        if other == cheapest or other not in totals.index:
            continue
        if (summaries := cost.break_even(totals.loc[cheapest], totals.loc[other])) is not None:
            switches.append((abs(np.log(summaries / volume.summaries)), summaries, other))
    if not switches:
        return ""
    _, summaries, other = min(switches)
    side = "above" if summaries > volume.summaries else "below"
    return f"; {side} {summaries / volume.days:,.0f} summaries a day, {label(other)} costs less"


def volume_sentence(choice: Optional[Choice], totals: pd.DataFrame, prices: cost.Prices, volume: cost.Volume,
                    label: Callable[[str], str], device: str) -> str:
    """The cheapest method within noise of the best at a volume and prices, in one sentence (or why not)."""
    if choice is None or totals.empty:
        return ""
    if prices.device is None:
        return (f"No price per device-hour is listed for {device}: give one to see what each method costs at a "
                "volume.")
    cheapest = cheapest_at(choice, totals)
    if cheapest is None:
        return ("This run's serving cost is not measured (`python -m training.serving_cost --run <run folder>`): "
                "the cost at a volume needs it.")
    row, bold = totals.loc[cheapest], (lambda m: f"**{label(m)}**")
    summaries = "summary" if volume.per_day == 1 else "summaries"
    text = (f"At {volume.per_day:,.0f} {summaries} a day for {volume.days:,.0f} days, {bold(cheapest)} costs the "
            f"least of the methods within noise of the best: {usd(row['total_usd'])} in all "
            f"({usd(row['one_time_usd'])} to tune and train, {usd(row['serving_usd'])} to serve "
            f"{cost.FORMS[row['form']]})")
    if cheapest != choice.best and pd.notna(totals.loc[choice.best, "total_usd"]):
        text += f"; {bold(choice.best)} would cost {usd(totals.loc[choice.best, 'total_usd'])}"
    return text + nearest_switch(choice, totals, cheapest, volume, label) + "."
