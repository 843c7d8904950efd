"""Where methods fail: the detectors on hand-written summaries, and the figures on the small fixture run."""

import numpy as np
import pytest

from scoring import lenses

DIALOGUE = ("#Person1#: Hi Tom, do you have two tickets for the 7:30 show?\n"
            "#Person2#: Yes, I have 2 left. They cost 15 dollars each.")


@pytest.mark.parametrize("summary,unsupported,repeats", [
    ("#Person1# asks Tom for two tickets for the 7:30 show. Tom has 2 left; they cost fifteen dollars.", [], []),
    ("#Person1# asks Mary for tickets.", ["Mary"], []),                      # a made-up name
    ("Tom sells 3 tickets for 20 dollars.", ["3", "20"], []),               # wrong numbers
    ("#Person3# buys the tickets.", ["#Person3#"], []),                      # a speaker who is not there
    ("Tom sells tickets at at at at at at the show.", [], ["at at at", "at"]),  # a loop
    ("mmmmmmmm", [], ["mmmmmmmm"]),
    ("", [], []),
    ("Do they have tickets? Yes. Sorry, Tom has two.", [], []),  # sentence openers are not names
    ("I'm sure Tom's tickets cost 15 dollars.", [], []),  # contractions and possessives of supported names
    ("ap" + "arp" * 66 + "ar", [], ["ap" + "arp" * 66 + "ar"]),  # a loop inside one word (200 characters)
    ("Tom said the man the man the man left.", [], ["the man"]),  # a phrase looping across words
    ("Tom sells tickets par par par par.", [], ["par"]),
    ("Tom paid 100000 dollars, hahaha.", ["100000"], []),  # digits and a short laugh are no loop
])
def test_detectors_on_hand_written_summaries(summary, unsupported, repeats):
    assert lenses.unsupported_details(summary, DIALOGUE) == unsupported
    assert lenses.repetitions(summary) == repeats


NUMBERS = ("#Person1#: The tour is twenty-two dollars, three hundred for the group, and 1,500 people came.\n"
           "#Person2#: Fine, two tickets then.")


@pytest.mark.parametrize("summary,unsupported", [
    ("The tour costs 22 dollars, 300 for the group.", []),          # digits against words, compounds too
    ("Fifteen hundred people came; they buy 2 tickets.", []),        # "1,500" = "fifteen hundred"
    ("The tour costs Twenty-Two dollars.", []),
    ("The tour costs 23 dollars and four hundred for the group.", ["23", "four hundred"]),
    ("1,600 people came.", ["1,600"]),
])
def test_numbers_are_compared_by_value_words_and_digits_alike(summary, unsupported):
    assert lenses.unsupported_details(summary, NUMBERS) == unsupported


def test_names_are_checked_in_scripts_with_capitals_and_the_lens_says_which():
    dialogue = "#Person1#: Иван, ты видел Марию?\n#Person2#: Да."
    assert lenses.unsupported_details("Иван видел Ольгу.", dialogue) == ["Ольгу"]      # Cyrillic: checked
    assert lenses.unsupported_details("Νίκος meets Иван.", dialogue) == ["Νίκος"]      # Greek too
    assert lenses.unsupported_details("山田 meets Иван.", dialogue) == []               # no case, no names ...
    assert "Chinese" in lenses.LIMITS and "Cyrillic" in lenses.LIMITS                  # ... and it says so


def test_slices_cover_the_test_set_and_pool_small_topics():
    rng = np.random.default_rng(0)
    features = [{"tokens": int(n), "speakers": 2 + (i % 5 == 0), "topic": "travel" if i < 30 else f"t{i}"}
                for i, n in enumerate(rng.integers(20, 400, 60))]
    masks = lenses.slice_masks(features)
    assert sum(m.sum() for _, m in masks["length"]) == 60 and all("tokens" in name for name, _ in masks["length"])
    assert [name for name, _ in masks["speakers"]] == ["2 speakers", "3+ speakers"]
    assert [(name, int(m.sum())) for name, m in masks["topic"]] == [("travel", 30), ("other topics", 30)]


def test_the_evaluation_writes_slices_unsupported_details_and_degenerate_outputs(evaluated_run):
    from contract.files import EVAL_METRICS, read_run_file

    metrics = read_run_file(evaluated_run, EVAL_METRICS)
    models = metrics["models"]
    assert set(metrics["slices"]) == {"length", "speakers", "topic"}
    for kind in ("length", "speakers"):
        assert sum(s["n"] for s in metrics["slices"][kind]) == metrics["n_dialogues"]
    for item in (s for kind in metrics["slices"].values() for s in kind):
        assert set(item["scores"]) == set(models)
        assert all(v["ci_low"] <= v["mean"] <= v["ci_high"] for v in item["scores"].values())
    for model in models:
        share = metrics["unsupported_details"][model]["share"]
        assert 0 <= share["ci_low"] <= share["mean"] <= share["ci_high"] <= 1
        assert set(metrics["degenerate_outputs"][model]) == {"repetition", "empty", "length_ratio"}


def test_the_page_draws_where_methods_fail_and_examples_sort_and_mark_it(evaluated_run):
    from dashboard import figures, frames
    from dashboard import run_data as rd
    from dashboard.handlers import example_choices, example_details, highlighted

    data = rd.load_run(evaluated_run)
    frame = frames.slices_frame(data.evaluation)
    slices = figures.slice_multiples(frame, data.labels)  # a panel per kind of slice the test set has
    assert len(slices.data) == frame["kind"].nunique() * len(data.models) >= 2 * len(data.models)
    assert all(t.error_y.array is not None for t in slices.data)
    bars = figures.failure_bars(frames.failures_frame(data.evaluation), data.labels)
    assert [t.name for t in bars.data] == [data.label(m) for m in data.models] and len(bars.data[0].x) == 3
    preds = data.shown_predictions
    order = [value for _, value in example_choices(preds, "unsupported details")]
    assert preds.set_index("id").loc[order, "unsupported"].is_monotonic_decreasing
    assert highlighted("Mary buys at at at tickets", ["Mary"], ["at at at"]) == [
        ("Mary", "unsupported"), (" ", None), ("buys", None), (" ", None), ("at", "repeats"), (" ", None),
        ("at", "repeats"), (" ", None), ("at", "repeats"), (" ", None), ("tickets", None)]
    _, _, *outputs, _ = example_details(data, order[0])
    assert all(isinstance(o, list) and all(len(p) == 2 for p in o) for o in outputs)


def test_a_live_summary_says_what_it_invents_or_repeats():
    from dashboard.batcher import Summary
    from dashboard.handlers import failure_note

    assert failure_note(Summary("m", "#Person1# asks Tom for two tickets."), DIALOGUE) == ""
    note = failure_note(Summary("m", "Mary pays 40 dollars at at at at at the show."), DIALOGUE)
    assert "not in the dialogue: Mary, 40" in note and "repeats" in note
