"""The Vote tab (blind battles between two models' summaries) and the ratings section of the Metrics tab.
Storage and statistics live in dashboard/votes.py; this module is layout and handlers."""

from typing import Optional

import gradio as gr
import pandas as pd

from dashboard import figures
from dashboard import votes as vt
from dashboard.summarize import check_text
from dashboard.ui import CONCURRENCY, AppState, refuse, run_models


def battle_models(state: AppState, from_test: bool) -> list[str]:
    """Models that can fight: available, and (for test dialogues) with stored predictions."""
    preds = state.data.predictions
    return [m for m in state.models if state.served.available(m) and (not from_test or (preds is not None and m in preds))]


def new_battle(state: AppState, text: Optional[str] = None, rng=None) -> vt.Battle:
    """Two models drawn so that pairs spread evenly, in random positions; a random test dialogue's stored
    predictions (instant), or the pasted dialogue generated live by the two models."""
    import random

    rng = rng or random.SystemRandom()
    pasted = bool((text or "").strip()) if isinstance(text, (str, type(None))) else True
    models = battle_models(state, from_test=not pasted)
    if len(models) < 2:
        raise refuse("Voting needs two models with outputs: train at least one method and run the evaluation.")
    a, b = state.votes.next_pair(models, rng)
    if not pasted:
        row = state.data.predictions.iloc[rng.randrange(len(state.data.predictions))]
        return state.votes.add_battle("test", row["dialogue"], row["id"], a, b, row[a], row[b])
    summaries, _, _ = run_models(state, text, "", 200, 1, False, 1.0, 1.0, 0, [a, b])
    if any(summaries[m].error for m in (a, b)):
        raise refuse("A model failed to summarize this dialogue; try again.")
    return state.votes.add_battle("pasted", check_text(text), None, a, b, summaries[a].text, summaries[b].text)


def cast_vote(state: AppState, battle_id, choice) -> dict:
    try:
        revealed = state.votes.cast(battle_id, choice)
    except vt.VoteError as e:
        raise refuse(str(e)) from None
    return {**revealed, "label_a": state.label(revealed["model_a"]), "label_b": state.label(revealed["model_b"])}


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
    labels = {m: state.label(m) for m in state.models}
    if len(votes) < vt.MIN_VOTES:
        text = (f"**People's verdict: not enough votes yet** ({len(votes)} of the {vt.MIN_VOTES} needed). Vote in "
                "the Vote tab; strengths and win rates appear here.")
        message = f"Not enough votes yet: {len(votes)} of {vt.MIN_VOTES}"
        return text, figures.empty_figure(message), figures.empty_figure(message)
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]), key=lambda m: state.models.index(m)
                    if m in state.models else len(state.models))
    agreement = vt.rouge_agreement(votes, rouge1_by_example(state.data.predictions))
    agree = ("no decisive votes on test dialogues with a ROUGE-1 difference yet" if agreement is None else
             f"**{agreement['share']:.0%}** [{agreement['ci_low']:.0%}, {agreement['ci_high']:.0%}] of "
             f"{agreement['n']} decisive votes on test dialogues went to the model with the higher ROUGE-1 "
             "(50% = no agreement)")
    text = (f"**People's verdict** from {len(votes)} blind votes ({(votes['choice'] == 'tie').sum()} ties, "
            f"{(votes['choice'] == 'both_bad').sum()} both bad). Does ROUGE agree with people? {agree}.")
    return (text, figures.strength_chart(vt.ratings_table(votes, models), labels, len(votes)),
            figures.win_rate_heatmap(vt.win_rates(votes, models), labels))


VOTE_BUTTONS = [("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both are bad", "both_bad")]


def build_vote_tab(state: AppState):
    gr.Markdown("**Which summary is better?** Two models, picked at random, summarize the same dialogue; you see "
                "them as A and B, without names. Vote, and the names are revealed. Your votes stand beside ROUGE in "
                "the Metrics tab.")
    battle = gr.State(None)   # the battle id, kept on the server: which model is A is never sent before the vote
    with gr.Row():
        test_button = gr.Button("New battle: a random test dialogue", variant="primary", elem_id="battle-test")
        paste_button = gr.Button("New battle on the dialogue I pasted below", elem_id="battle-paste")
    pasted = gr.Textbox(label="Your dialogue (optional)", lines=3, elem_id="vote-paste")
    dialogue = gr.Textbox(label="Dialogue", lines=8, interactive=False, elem_id="vote-dialogue")
    with gr.Row(equal_height=True):
        summary_a = gr.Textbox(label="Summary A", lines=4, interactive=False, elem_id="vote-a")
        summary_b = gr.Textbox(label="Summary B", lines=4, interactive=False, elem_id="vote-b")
    with gr.Row():
        buttons = [gr.Button(text, interactive=False, elem_id=f"choose-{choice}") for text, choice in VOTE_BUTTONS]
    reveal = gr.Markdown(elem_id="vote-reveal")

    def start(text=None):
        b = new_battle(state, text)
        return (b.id, b.dialogue, b.summary_a, b.summary_b, "",
                *[gr.update(interactive=True) for _ in buttons])

    shown = [battle, dialogue, summary_a, summary_b, reveal, *buttons]
    test_button.click(lambda: start(), None, shown, api_visibility="private")
    paste_button.click(start, pasted, shown, api_visibility="private")
    for (_, choice), button in zip(VOTE_BUTTONS, buttons):
        def vote(battle_id, choice=choice):
            if not battle_id:
                raise refuse("Start a battle first.")
            r = cast_vote(state, battle_id, choice)
            said = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}[choice]
            return (None, f"You said **{said}**. Summary A was **{r['label_a']}**, summary B was **{r['label_b']}**. "
                          "Start the next battle with one click above.", *[gr.update(interactive=False)
                                                                          for _ in buttons])
        button.click(vote, battle, [battle, reveal, *buttons], api_visibility="private")

    def vote_battle(dialogue: str = "") -> dict:
        """A new battle: an optional dialogue (empty = a random test dialogue) in; the battle id and the two
        anonymous summaries out."""
        b = new_battle(state, dialogue)
        return {"battle_id": b.id, "dialogue": b.dialogue, "summary_a": b.summary_a, "summary_b": b.summary_b}

    def vote_cast(battle_id: str, choice: str) -> dict:
        """A vote on a battle (choice: a, b, tie or both_bad); the revealed model names out."""
        return cast_vote(state, battle_id, choice)

    gr.api(vote_battle, api_name="vote_battle", concurrency_limit=CONCURRENCY)
    gr.api(vote_cast, api_name="vote_cast", concurrency_limit=16)


def build_ratings_section(demo: gr.Blocks, state: AppState):
    gr.Markdown("## People's verdict (blind votes)")
    text = gr.Markdown(elem_id="ratings-text")
    refresh = gr.Button("Refresh the ratings", size="sm")
    with gr.Row():
        strengths = gr.Plot(elem_id="plot-strengths")
        wins = gr.Plot(elem_id="plot-winrates")
    refresh.click(lambda: ratings_view(state), None, [text, strengths, wins], api_visibility="private")
    demo.load(lambda: ratings_view(state), None, [text, strengths, wins], api_visibility="private")
