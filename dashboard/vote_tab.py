"""The Vote tab (blind battles between two models' summaries) and the ratings section of the Metrics tab.
Layout only: dashboard/vote_handlers.py answers, dashboard/votes.py stores."""

import gradio as gr

from dashboard import votes as vote_store
from dashboard.handlers import CONCURRENCY, AppState, refuse
from dashboard.vote_handlers import cast_vote, new_battle, pool_line, ratings_view
from scoring import preferences

NOT_COUNTED = {
    "non_anonymous": "Your vote is kept but **not counted**: someone had asked for named summaries of this "
                     "dialogue, so the names could be known. ",
    "seen_named": "Your vote is kept but **not counted**: an earlier vote of yours had revealed who wrote one of "
                  "these summaries. ",
    "rate_limited": "Your vote is kept but **not counted**: this connection has reached the hourly vote limit. ",
}
STORED = ("*What is stored:* the dialogue (a pasted one too), the two summaries and your vote, with a keyed hash of "
          "your connection that cannot be turned back into your address (it limits votes per hour); nothing else "
          "about you.")
VOTE_BUTTONS = [("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both are bad", "both_bad")]


def build_vote_tab(state: AppState):
    gr.Markdown("**Which summary is better?** Two models, picked at random, summarize the same dialogue; you see "
                "them as A and B, without names. Vote, and the names are revealed. Your votes stand beside ROUGE in "
                "the Metrics tab.\n\n" + STORED + f" *How long votes last:* {state.votes.durability}")
    if state.votes.notice:
        gr.Markdown(f"> ⚠️ {state.votes.notice}")
    pool = gr.Markdown(pool_line(state), elem_id="vote-pool")
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

    def start(text=None, request: gr.Request = None):
        b = new_battle(state, text, request)
        return (b.id, b.dialogue, b.summary_a, b.summary_b, "", pool_line(state),
                *[gr.update(interactive=True) for _ in buttons])

    shown = [battle, dialogue, summary_a, summary_b, reveal, pool, *buttons]
    def start_on_a_test_dialogue(request: gr.Request):
        return start(None, request)

    test_button.click(start_on_a_test_dialogue, None, shown, api_visibility="private")
    paste_button.click(start, pasted, shown, api_visibility="private")
    for (_, choice), button in zip(VOTE_BUTTONS, buttons):
        def vote(battle_id, request: gr.Request, choice=choice):
            if not battle_id:
                raise refuse("Start a battle first.")
            r = cast_vote(state, battle_id, choice, request)
            said = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}[choice]
            return (None, f"You said **{said}**. Summary A was **{r['label_a']}**, summary B was **{r['label_b']}**. "
                          f"{NOT_COUNTED.get(r['flag'], '')}Start the next battle with one click above.",
                    *[gr.update(interactive=False) for _ in buttons])
        button.click(vote, battle, [battle, reveal, *buttons], api_visibility="private")

    def vote_battle(dialogue: str = "", request: gr.Request = None) -> dict:
        """A new battle: an optional dialogue (empty = a random held-back test dialogue) in; the battle id and the
        two anonymous summaries out."""
        b = new_battle(state, dialogue, request)
        return {"battle_id": b.id, "dialogue": b.dialogue, "summary_a": b.summary_a, "summary_b": b.summary_b}

    def vote_cast(battle_id: str, choice: str, request: gr.Request = None) -> dict:
        """A vote on a battle (choice: a, b, tie or both_bad); the revealed model names out, and `flag` (None =
        counted; non_anonymous or rate_limited = kept, left out of the ratings)."""
        return cast_vote(state, battle_id, choice, request)

    gr.api(vote_battle, api_name="vote_battle", concurrency_limit=CONCURRENCY)
    gr.api(vote_cast, api_name="vote_cast", concurrency_limit=CONCURRENCY)


def build_ratings_section(demo: gr.Blocks, state: AppState):
    text = gr.Markdown(elem_id="ratings-text")
    refresh = gr.Button("Refresh the ratings", size="sm")
    with gr.Row():
        strengths = gr.Plot(elem_id="plot-strengths", visible=False)
        wins = gr.Plot(elem_id="plot-winrates", visible=False)

    def shown():  # the charts only once there are enough votes: no empty plot boxes
        said, strength_fig, win_fig = ratings_view(state)
        try:
            enough = len(preferences.counted(state.votes.votes_frame())) >= preferences.MIN_VOTES
        except vote_store.VoteError:  # paused: the text says so
            enough = False
        return said, gr.update(value=strength_fig, visible=enough), gr.update(value=win_fig, visible=enough)

    refresh.click(shown, None, [text, strengths, wins], api_visibility="private")
    demo.load(shown, None, [text, strengths, wins], api_visibility="private")
