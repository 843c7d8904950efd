"""Blind battles for the Vote tab and the API, and the people's verdict for the Metrics tab. Storage and
statistics live in dashboard/votes.py; tabs only lay out widgets.

Why a battle cannot be matched with what the page shows under names: test battles draw from the test dialogues
the page never shows with model names (run_data.held_back_for_battles: the Examples tab and Compare's picker show
the other half), and a client that asked for named summaries of a battle's dialogue (Compare, /summarize,
/summarize_all) is matched from ANY address: once anyone has asked for a dialogue's named summaries, no vote on
it counts (kept, flagged non_anonymous) and it leaves the battle pool (votes.py). A phone and a laptop, or a VPN,
can drain the pool (the Vote tab shows how many test dialogues are left) but cannot steer the verdict.
"""

import random
from typing import Optional

import gradio as gr
import pandas as pd

from contract.untrusted import plain
from dashboard import figures
from dashboard import votes as vote_store
from dashboard.handlers import ROUGE, AppState, client_of, refuse, session_of, wait
from dashboard.inputs import InputError, check_text
from scoring import preferences


def battle_models(state: AppState, pool: Optional[pd.DataFrame]) -> list[str]:
    """Models that can fight: available, and (for test dialogues) with stored predictions."""
    return [m for m in state.names if m not in state.models.loaded.errors and (pool is None or m in pool)]


def unseen_pool(state: AppState) -> Optional[pd.DataFrame]:
    """The held-back test dialogues whose named summaries nobody has asked for: what test battles draw from."""
    pool = state.data.battle_predictions
    if pool is None or state.votes is None:
        return pool
    named = state.votes.named_texts()
    return pool[[vote_store.text_hash(d) not in named for d in pool["dialogue"]]].reset_index(drop=True)


def unseen_by(pool: pd.DataFrame, models: list[str], seen: set[str]):
    """(a, b) -> which pool rows show neither model's summary to a client that has seen `seen` under names."""
    fresh = {m: ~pool[m].map(vote_store.text_hash).isin(seen) for m in models}
    return lambda a, b: fresh[a] & fresh[b]


def pool_line(state: AppState) -> str:
    try:
        pool, left = state.data.battle_predictions, unseen_pool(state)
    except vote_store.VoteError as e:
        return str(e)
    if pool is None:
        return "No evaluated test dialogues to battle on: paste a dialogue of your own."
    return (f"{len(left)} of {len(pool)} held-back test dialogues are left for battles (a dialogue leaves the pool "
            "once anyone asks for its summaries under model names).")


def new_battle(state: AppState, text: Optional[str] = None, request: Optional[gr.Request] = None,
               rng=None) -> vote_store.Battle:
    """Two models drawn so that pairs spread evenly, in random positions: a random held-back test dialogue's
    stored predictions (instant), or the pasted dialogue generated live by the two models."""
    rng = rng or random.SystemRandom()
    pasted = bool((text or "").strip()) if isinstance(text, (str, type(None))) else True
    try:
        state.votes.check_open()
        pool = None if pasted else unseen_pool(state)
    except vote_store.VoteError as e:
        raise refuse(str(e)) from None
    models = battle_models(state, pool)
    if len(models) < 2 or (not pasted and pool is None):
        raise refuse("Voting on test dialogues needs two models and an evaluated run; or paste a dialogue of your "
                     "own.")
    if not pasted and pool.empty:
        raise refuse("Every held-back test dialogue has had its named summaries requested, so none can be judged "
                     "blind any more; paste a dialogue of your own.")
    client, session = client_of(state, request), session_of(state, request)
    try:
        if not pasted:
            fresh = unseen_by(pool, models, state.votes.seen_named(client))
            a, b = state.votes.next_pair(models, rng, usable=lambda pair: fresh(*pair).any())
            unseen = fresh(a, b).to_numpy().nonzero()[0]
            row = pool.iloc[rng.choice(list(unseen) if len(unseen) else range(len(pool)))]
            return state.votes.add_battle("test", row["dialogue"], row["id"], a, b, row[a], row[b], client, session)
        a, b = state.votes.next_pair(models, rng)
        dialogue = check_text(text)
        vote_store.check_length("dialogue", dialogue)  # before any model is called
        summaries = wait(state.own, dialogue, [a, b])
        if any(summaries[m].error for m in (a, b)):
            raise refuse("A model failed to summarize this dialogue; try again.")
        return state.votes.add_battle("pasted", dialogue, None, a, b, summaries[a].text, summaries[b].text, client,
                                      session)
    except (InputError, vote_store.VoteError) as e:
        raise refuse(str(e)) from None


def cast_vote(state: AppState, battle_id, choice, request: Optional[gr.Request] = None) -> dict:
    try:
        revealed = state.votes.cast(battle_id, choice, client_of(state, request), session_of(state, request))
    except vote_store.VoteError as e:
        raise refuse(str(e)) from None
    return {**revealed, "label_a": state.data.label(revealed["model_a"]),
            "label_b": state.data.label(revealed["model_b"])}


def rouge1_against_references(state: AppState):
    """(dialogue id, summary) -> ROUGE-1 against that test dialogue's references, or None if they are unknown."""
    pool = state.data.battle_predictions
    references = {} if pool is None else dict(zip(pool["id"], pool["references"]))

    def rouge1(dialogue_id, summary):
        refs = references.get(dialogue_id)
        return None if not refs else sum(ROUGE.score(r, summary)["rouge1"] for r in refs) / len(refs)

    return rouge1


def flag_line(votes: pd.DataFrame) -> str:
    flagged = votes["flag"].value_counts()
    return (f"Left out of the ratings: {int(flagged.get('non_anonymous', 0))} votes by a client that had asked "
            f"for named summaries of that dialogue, {int(flagged.get('seen_named', 0))} on a summary an earlier "
            f"vote had revealed to the same client, {int(flagged.get('rate_limited', 0))} over the hourly limit "
            "per client.")


def length_line(controlled, beta: dict, labels: dict) -> str:
    """What the length-controlled ratings (hollow markers) mean, in one sentence."""
    order = " > ".join(plain(labels.get(m, m)) for m in controlled["model"])
    return (f"**Length-controlled** (each vote's length difference as a covariate): {order}; length coefficient "
            f"{beta['beta']:.2f} [{beta['ci_low']:.2f}, {beta['ci_high']:.2f}] (above 0: readers prefer the longer "
            "summary, whoever wrote it). A model whose lead shrinks there wins partly by writing longer.")


def ratings_view(state: AppState):
    """(summary text, strengths figure, win-rate figure) from the counted votes so far."""
    if state.votes is None:
        return "Votes are off for this app.", figures.empty_figure("No votes"), figures.empty_figure("No votes")
    try:
        everything = state.votes.votes_frame()
    except vote_store.VoteError as e:
        return str(e), figures.empty_figure("Voting is paused"), figures.empty_figure("Voting is paused")
    votes = preferences.counted(everything)
    labels = state.data.labels
    if len(votes) < preferences.MIN_VOTES:
        text = (f"**People's verdict: not enough votes yet** ({len(votes)} of the {preferences.MIN_VOTES} needed). "
                f"Vote in the Vote tab; strengths and win rates appear here. {flag_line(everything)}")
        message = f"Not enough votes yet: {len(votes)} of {preferences.MIN_VOTES}"
        return text, figures.empty_figure(message), figures.empty_figure(message)
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]), key=lambda m: state.names.index(m)
                    if m in state.names else len(state.names))
    agreement = preferences.rouge_agreement(votes, rouge1_against_references(state))
    agree = ("no decisive votes on test dialogues with a ROUGE-1 difference yet" if agreement is None else
             f"**{agreement['share']:.0%}** [{agreement['ci_low']:.0%}, {agreement['ci_high']:.0%}] of "
             f"{agreement['n']} decisive votes on test dialogues went to the summary with the higher ROUGE-1 "
             "(50% = no agreement)")
    controlled, beta = preferences.length_controlled_table(votes, models)
    text = (f"**People's verdict** from {len(votes)} blind votes ({(votes['choice'] == 'tie').sum()} ties, "
            f"{(votes['choice'] == 'both_bad').sum()} both bad). Does ROUGE agree with people? {agree}. "
            f"{length_line(controlled, beta, labels)} {flag_line(everything)}")
    strengths = figures.strength_chart(preferences.ratings_table(votes, models), labels, len(votes), controlled)
    return (text, strengths,
            figures.win_rate_heatmap(preferences.win_rates(votes, models), labels))
