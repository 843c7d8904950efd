"""The verdict: generated from the run's numbers, and never claiming what the intervals do not support."""

import copy

import pandas as pd

from dashboard import run_data as rd
from dashboard import verdict_card as verdict
from scoring.verdict import people_sentence


def metrics(label: str, trainable: int, seconds: float, memory: int) -> dict:
    return {"method": {"label": label, "peft_type": "LORA"}, "parameters": {"trainable": trainable, "total": 10**6},
            "cost": {"train_seconds": seconds, "wall_seconds": seconds, "peak_memory_bytes": memory,
                     "checkpoint_bytes": 1, "examples_per_second": 1.0, "tokens_per_second": 1.0,
                     "peak_memory_measure": "rss", "device": "cpu"}}


def score(mean: float, half: float) -> dict:
    return {k: {"mean": mean, "ci_low": mean - half, "ci_high": mean + half} for k in ("rouge1", "rouge2", "rougeL")}


def run_data(p_holm: float, lora_mean: float = 0.40, p_best: float = 0.8) -> rd.RunData:
    evaluation = {"headline_protocol": "per_row",
                  "scores": {"per_row": {"base": score(0.20, 0.02), "full": score(0.45, 0.03),
                                         "lora": score(lora_mean, 0.03)}},
                  "comparisons": {"per_row": [{"a": "full", "b": "lora", "metric": "rouge1", "mean_difference": 0.05,
                                               "p_value": p_holm, "p_holm": p_holm}]},
                  "ranking": {"p_best": {"full": p_best, "lora": 1 - p_best, "base": 0.0}, "tied_at_top": ["full"]}}
    train = {"full": metrics("Full fine-tune", 900_000, 60.0, 500 * 2**20),
             "lora": metrics("LoRA", 100_000, 80.0, 400 * 2**20)}
    return rd.RunData(folder=None, run={"base_model": "google/flan-t5-base"}, methods=["full", "lora"], train=train,
                      evaluation=evaluation)


def test_a_cheaper_method_within_the_noise_is_offered_with_what_the_step_up_costs():
    data = run_data(p_holm=0.40)
    choice = verdict.choice_of(data)
    text = verdict.text(data, choice)
    assert choice.best == "full" and choice.cheapest == "lora"
    assert "**Full fine-tune** writes the best summaries: ROUGE-1 0.450 [0.420, 0.480]" in text
    assert "probability 0.80" in text and "base without fine-tuning scores 0.200" in text
    assert "**LoRA** is not worse beyond the paired test's noise" in text
    assert "9.0× the parameters, 0.8× the training time and 1.2× the peak memory" in text


def test_a_method_worse_beyond_the_noise_is_never_offered():
    data = run_data(p_holm=0.001)
    choice = verdict.choice_of(data)
    text = verdict.text(data, choice)
    assert choice.cheapest == "full" and "LoRA" not in text
    assert "No cheaper method comes within the paired test's noise" in text


def test_the_sentences_follow_the_numbers():
    before = verdict.text(run_data(0.4), verdict.choice_of(run_data(0.4)))
    better_lora = run_data(0.4, lora_mean=0.50, p_best=0.3)
    better_lora.evaluation["ranking"]["p_best"] = {"full": 0.3, "lora": 0.7, "base": 0.0}
    after = verdict.text(better_lora, verdict.choice_of(better_lora))
    assert before != after and "**LoRA** writes the best summaries: ROUGE-1 0.500" in after
    assert "probability 0.70" in after


def test_no_evaluation_is_one_line_and_no_chart():
    data = copy.copy(run_data(0.4))
    data.evaluation = None
    choice = verdict.choice_of(data)
    assert choice is None and verdict.chart(data, choice) is None
    assert "No verdict yet" in verdict.text(data, choice)


def test_the_people_disagreeing_is_said_only_with_its_interval():
    data = run_data(0.4)
    choice = verdict.choice_of(data)
    ratings = pd.DataFrame([{"model": "lora", "strength": 0.5, "ci_low": 0.3, "ci_high": 0.7},
                            {"model": "full", "strength": -0.5, "ci_low": -0.7, "ci_high": -0.3}])
    assert "beyond its interval" in people_sentence(ratings, 40, choice, data.label)
    ratings.loc[1, "ci_high"] = 0.4
    assert "overlaps" in people_sentence(ratings, 40, choice, data.label)
    agreeing = ratings.iloc[::-1].reset_index(drop=True)
    assert "agrees" in people_sentence(agreeing, 40, choice, data.label)


def test_a_best_method_no_better_than_the_base_is_said_to_be_so():
    data = run_data(p_holm=0.4)
    data.evaluation["scores"]["per_row"]["base"] = score(0.44, 0.03)
    data.evaluation["comparisons"]["per_row"].append({"a": "base", "b": "full", "metric": "rouge1",
                                                      "mean_difference": -0.01, "p_value": 0.5, "p_holm": 0.6})
    text = verdict.text(data, verdict.choice_of(data))
    assert "No method beats the base beyond the paired test's noise" in text and "writes the best" not in text
    only = run_data(p_holm=0.4)
    only.train.pop("lora")
    assert "the only evaluated method" in verdict.text(only, verdict.choice_of(only))


def test_the_dialogues_a_paired_test_needs_separate_a_difference_of_that_size_about_80_percent_of_the_time():
    """Simulation against known distributions: per-dialogue differences N(0.02, 0.1) (a real spread of ROUGE-1
    differences, a small gap); the estimated count, used for fresh experiments, makes the paired test (the one the
    evaluation runs) find the difference in about 80% of them."""
    import numpy as np

    from scoring.stats import dialogues_needed, paired_permutation_test

    rng = np.random.default_rng(0)
    n = dialogues_needed(rng.normal(0.02, 0.1, 20_000))
    assert 170 <= n <= 215  # the formula's 196 from an estimated sd
    found = [paired_permutation_test(rng.normal(0.02, 0.1, n), np.zeros(n), permutations=1000, seed=i)[1] < 0.05
             for i in range(500)]
    assert 0.72 <= np.mean(found) <= 0.88
    assert dialogues_needed([0.1, -0.1, 0.1, -0.1]) is None  # no difference measured: nothing to size for
    half = dialogues_needed(rng.normal(0.04, 0.1, 20_000))
    assert 0.2 < half / n < 0.3  # twice the difference needs a quarter of the dialogues


def test_when_the_best_two_are_within_noise_the_verdict_says_how_many_dialogues_would_tell_them_apart():
    data = run_data(p_holm=0.40)
    data.evaluation["comparisons"]["per_row"][0]["dialogues_needed"] = 1234
    data.evaluation["n_dialogues"] = 80
    text = verdict.text(data, verdict.choice_of(data))
    assert ("To tell Full fine-tune from LoRA apart, about 1,234 test dialogues would be needed at 80% power for a "
            "difference of the size measured; this run used 80.") in text
    told_apart = run_data(p_holm=0.001)
    told_apart.evaluation["comparisons"]["per_row"][0]["dialogues_needed"] = 50
    told_apart.evaluation["n_dialogues"] = 80
    assert "would be needed" not in verdict.text(told_apart, verdict.choice_of(told_apart))


def test_the_evaluation_records_the_dialogues_each_pair_would_need(evaluated_run):
    from contract.files import EVAL_METRICS, read_run_file

    rows = read_run_file(evaluated_run, EVAL_METRICS)["comparisons"]["per_row"]
    assert all("dialogues_needed" in r for r in rows)
    assert any(isinstance(r["dialogues_needed"], int) and r["dialogues_needed"] >= 2 for r in rows)
