"""Blind battles for the Vote tab and the API, and the people's verdict for the Metrics tab. Storage and
statistics live in dashboard/votes.py; tabs only lay out widgets."""

import random
from typing import Optional

import pandas as pd

from dashboard import figures
from dashboard import votes as vt
from dashboard.handlers import AppState, refuse, wait
from dashboard.inputs import check_text


def battle_models(state: AppState, from_test: bool) -> list[str]:
    """Models that can fight: available, and (for test dialogues) with stored predictions."""
    preds = state.data.predictions
    return [m for m in state.names if m not in state.models.loaded.errors
            and (not from_test or (preds is not None and m in preds))]


def new_battle(state: AppState, text: Optional[str] = None, rng=None) -> vt.Battle:
    """Two models drawn so that pairs spread evenly, in random positions; a random test dialogue's stored
    predictions (instant), or the pasted dialogue generated live by the two models."""
    rng = rng or random.SystemRandom()
    pasted = bool((text or "").strip()) if isinstance(text, (str, type(None))) else True
    models = battle_models(state, from_test=not pasted)
    if len(models) < 2:
        raise refuse("Voting needs two models with outputs: train at least one method and run the evaluation.")
    a, b = state.votes.next_pair(models, rng)
    if not pasted:
        row = state.data.predictions.iloc[rng.randrange(len(state.data.predictions))]
        return state.votes.add_battle("test", row["dialogue"], row["id"], a, b, row[a], row[b])
    summaries = wait(state, text, [a, b])
    if any(summaries[m].error for m in (a, b)):
        raise refuse("A model failed to summarize this dialogue; try again.")
    return state.votes.add_battle("pasted", check_text(text), None, a, b, summaries[a].text, summaries[b].text)


def cast_vote(state: AppState, battle_id, choice) -> dict:
    try:
        revealed = state.votes.cast(battle_id, choice)
    except vt.VoteError as e:
        raise refuse(str(e)) from None
    return {**revealed, "label_a": state.data.label(revealed["model_a"]), "label_b": state.data.label(revealed["model_b"])}


def rouge1_by_example(preds: Optional[pd.DataFrame]) -> dict:
    if preds is None:
        return {}
    models = [c[:-len("_rouge1")] for c in preds.columns if c.endswith("_rouge1")]
    return {(row["id"], m): row[f"{m}_rouge1"] for _, row in preds.iterrows() for m in models}


def ratings_view(state: AppState):
    """(summary text, strengths figure, win-rate figure) from the votes so far."""
    if state.votes is None:
        return "Votes are off for this app.", figures.empty_figure("No votes"), figures.empty_figure("No votes")
    votes = state.votes.votes_frame()
    labels = {m: state.data.label(m) for m in state.names}
    if len(votes) < vt.MIN_VOTES:
        text = (f"**People's verdict: not enough votes yet** ({len(votes)} of the {vt.MIN_VOTES} needed). Vote in "
                "the Vote tab; strengths and win rates appear here.")
        message = f"Not enough votes yet: {len(votes)} of {vt.MIN_VOTES}"
        return text, figures.empty_figure(message), figures.empty_figure(message)
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]), key=lambda m: state.names.index(m)
                    if m in state.names else len(state.names))
    agreement = vt.rouge_agreement(votes, rouge1_by_example(state.data.predictions))
    agree = ("no decisive votes on test dialogues with a ROUGE-1 difference yet" if agreement is None else
             f"**{agreement['share']:.0%}** [{agreement['ci_low']:.0%}, {agreement['ci_high']:.0%}] of "
             f"{agreement['n']} decisive votes on test dialogues went to the model with the higher ROUGE-1 "
             "(50% = no agreement)")
    text = (f"**People's verdict** from {len(votes)} blind votes ({(votes['choice'] == 'tie').sum()} ties, "
            f"{(votes['choice'] == 'both_bad').sum()} both bad). Does ROUGE agree with people? {agree}.")
    return (text, figures.strength_chart(vt.ratings_table(votes, models), labels, len(votes)),
            figures.win_rate_heatmap(vt.win_rates(votes, models), labels))
