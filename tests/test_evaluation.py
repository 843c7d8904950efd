import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from contract.files import EVAL_METRICS, EVAL_PREDICTIONS, ArtifactError, read_run_file
from scoring.rouge import METRICS, Rouge
from scoring.stats import bootstrap_ci, paired_permutation_test
from tests.helpers import FULL_MODEL, ROOT, SHARED, needs_shared
from training.generation import generate
from training.score_file import score_file

REF = "The cat sat on the mat. It was happy!\nThen it slept."
PRED = "A cat was sitting on a mat. Later the cats were sleeping."


def test_rouge_equals_rouge_score_directly():
    direct = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    ours = Rouge(split_sentences=True).score(REF, PRED)
    expected = direct.score("The cat sat on the mat.\nIt was happy!\nThen it slept.",
                            "A cat was sitting on a mat.\nLater the cats were sleeping.")
    for k in METRICS:
        assert abs(ours[k] - expected[k].fmeasure) < 1e-9
    assert ours["rougeLsum"] != pytest.approx(ours["rougeL"])  # sentence splitting matters for Lsum


def test_multi_reference_takes_the_best_reference():
    refs = ["Bob buys a red lamp.", "Someone purchases a lamp for ten dollars. It is red."]
    pred = "Bob buys a lamp. It is red."
    ours = Rouge().score_multi(refs, pred)
    direct = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True).score_multi(
        ["Bob buys a red lamp.", "Someone purchases a lamp for ten dollars.\nIt is red."],
        "Bob buys a lamp.\nIt is red.",
    )
    for k in METRICS:
        assert abs(ours[k] - direct[k].fmeasure) < 1e-9
        assert ours[k] >= max(Rouge().score(r, pred)[k] for r in refs) - 1e-12


LAB = {"original_model_summaries": (0.2334, 0.0760, 0.2015, 0.2015),
       "instruct_model_summaries": (0.4216, 0.1804, 0.3384, 0.3384),
       "peft_model_summaries": (0.4081, 0.1633, 0.3251, 0.3249)}


@needs_shared
@pytest.mark.parametrize("column", list(LAB))
def test_reproduces_the_labs_published_rouge(column):
    result = score_file(SHARED / "data" / "lab-reference" / "dialogue-summary-training-results.csv", column,
                        "human_baseline_summaries", split_sentences=False)
    assert result["rows"] == 1500
    for k, published in zip(METRICS, LAB[column]):
        assert abs(result[k]["mean"] - published) <= 0.0005, (k, result[k]["mean"], published)


@needs_shared
def test_the_evaluate_metric_equals_the_scorer_on_the_labs_predictions():
    """The evaluation scores through scoring/dialogsum_rouge (an `evaluate` module loaded offline): on the lab's
    1,500 rows it gives exactly the figures of the scorer behind training.score_file, and the lab's within 0.0005."""
    from scoring.rouge import load_rouge_metric
    from training.data import read_records

    rows = read_records(SHARED / "data" / "lab-reference" / "dialogue-summary-training-results.csv")
    metric = load_rouge_metric()
    for column, published in LAB.items():
        predictions = [str(r[column] or "") for r in rows]
        references = [str(r["human_baseline_summaries"] or "") for r in rows]
        figures = metric.compute(predictions=predictions, references=references, split_sentences=False)
        direct = score_file(SHARED / "data" / "lab-reference" / "dialogue-summary-training-results.csv", column,
                            "human_baseline_summaries", split_sentences=False)
        for k, lab in zip(METRICS, published):
            assert figures[k] == pytest.approx(direct[k]["mean"], abs=1e-12) and abs(figures[k] - lab) <= 0.0005
    per_row = metric.compute(
        predictions=["Bob buys a lamp. It is red."],
        references=[["Bob buys a red lamp.", "A lamp."]],
        use_aggregator=False,
    )
    rouge = Rouge()
    assert per_row["rouge1"] == [np.mean([rouge.score(r, "Bob buys a lamp. It is red.")["rouge1"]
                                          for r in ("Bob buys a red lamp.", "A lamp.")])]


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0, 1, 50), rng.uniform(0, 1, 2000)
    m1, lo1, hi1 = bootstrap_ci(small)
    m2, lo2, hi2 = bootstrap_ci(large)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi2 - lo2 < 0.5 * (hi1 - lo1)


def test_paired_test_of_a_model_against_itself_is_not_significant():
    a = np.random.default_rng(2).uniform(0, 1, 200)
    diff, p = paired_permutation_test(a, a.copy())
    assert diff == 0 and p == 1.0
    _, p_shifted = paired_permutation_test(a + 0.05, a)
    assert p_shifted < 0.001


def test_batched_generation_equals_one_at_a_time(tiny_run):
    run_dir, _ = tiny_run
    tok = AutoTokenizer.from_pretrained(run_dir / FULL_MODEL)
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir / FULL_MODEL).eval()
    from training.data import load_data

    prompts = list(load_data("sample").splits["validation"]["dialogue"][:12])
    batched = generate(model, tok, prompts, batch_size=6, max_new_tokens=24)
    single = [generate(model, tok, [p], batch_size=1, max_new_tokens=24)[0] for p in prompts]
    assert batched == single
    assert sum(bool(s) for s in single) >= 6  # the comparison is over real text, not empty strings


@pytest.fixture(scope="module")
def evaluated(evaluated_run):
    return evaluated_run, json.loads((evaluated_run / EVAL_METRICS).read_text())


def test_evaluate_writes_valid_metrics_and_predictions(evaluated):
    run_dir, metrics = evaluated
    assert read_run_file(run_dir, EVAL_METRICS) == json.loads((run_dir / EVAL_METRICS).read_text())
    assert metrics["n_dialogues"] == 8 and metrics["n_references"] == 24
    for protocol in ("per_row", "multi_reference"):
        for model in ("base", "full", "lora"):
            for k in METRICS:
                s = metrics["scores"][protocol][model][k]
                assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    rows = [json.loads(line) for line in (run_dir / EVAL_PREDICTIONS).read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]["outputs"]) == {"base", "full", "lora"}
    assert metrics["models"] == ["base", "full", "lora"]
    pairs = {(c["a"], c["b"]) for c in metrics["comparisons"]["per_row"]}
    assert pairs == {("base", "full"), ("base", "lora"), ("full", "lora")}
    assert all(c["p_holm"] >= c["p_value"] for c in metrics["comparisons"]["per_row"])
    assert len(rows[0]["references"]) == 3
    mean_r1 = np.mean([r["rouge"]["full"]["rouge1"] for r in rows])
    assert mean_r1 == pytest.approx(metrics["scores"]["per_row"]["full"]["rouge1"]["mean"])
    assert metrics["decoding"]["do_sample"] is False and metrics["decoding"]["max_new_tokens"] == 16


def test_adapters_sit_on_the_base_weights_and_leave_base_untouched(evaluated):
    from contract.loading import load_run_models

    run_dir, _ = evaluated
    loaded = load_run_models(run_dir, "cpu")
    base = AutoModelForSeq2SeqLM.from_pretrained(run_dir / "base" / "model").eval()
    enc = loaded.tokenizer(["#Person1#: Hello there."], return_tensors="pt")
    dec = torch.zeros((1, 2), dtype=torch.long)
    with torch.inference_mode():
        assert torch.equal(loaded.base(**enc, decoder_input_ids=dec).logits, base(**enc, decoder_input_ids=dec).logits)
    base_storages = {p.data_ptr() for p in loaded.base.parameters()}
    mixed = {p.data_ptr() for n, p in loaded.mixed["LORA"].named_parameters() if "lora_" not in n}
    assert mixed and mixed <= base_storages  # the LoRA model's base layers ARE the base's tensors: no copy


def test_corrupt_eval_metrics_are_rejected(evaluated, tmp_path):
    run_dir, metrics = evaluated
    broken = dict(metrics, headline_protocol="vibes")
    (tmp_path / "eval").mkdir()
    (tmp_path / EVAL_METRICS).write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match="headline_protocol"):
        read_run_file(tmp_path, EVAL_METRICS)


def run_score(*args):
    return subprocess.run([sys.executable, "-m", "training.score_file", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_score_cli_prints_json_and_reports_errors(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"pred": "Bob buys a lamp.", "ref": "Bob buys a red lamp."}) + "\n")
    out = run_score(good, "--prediction-column", "pred", "--reference-column", "ref")
    assert out.returncode == 0 and json.loads(out.stdout)["rouge1"]["mean"] == pytest.approx(
        Rouge().score("Bob buys a red lamp.", "Bob buys a lamp.")["rouge1"])
    missing = run_score(good, "--prediction-column", "summary", "--reference-column", "ref")
    assert missing.returncode == 2 and "no column 'summary'" in missing.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    bad = run_score(empty, "--prediction-column", "a", "--reference-column", "b")
    assert bad.returncode == 2 and "empty.csv" in bad.stderr


def test_holm_adjustment_matches_a_worked_example():
    from scoring.stats import holm_adjust

    # p = (0.01, 0.04, 0.03): sorted 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_rank_probabilities_from_the_two_level_bootstrap():
    import numpy as np

    from scoring.stats import rank_probabilities

    rng = np.random.default_rng(0)
    clear = rng.normal(0.6, 0.05, (3, 200))           # 3 seeds, clearly ahead
    close_a = rng.normal(0.4, 0.1, (1, 200))         # one seed ...
    close_b = rng.permutation(close_a[0])[None]       # ... and the same scores on other dialogues: indistinguishable
    p = rank_probabilities({"clear": clear, "a": close_a, "b": close_b}, resamples=2000, seed=1)
    assert p["clear"][0] == 1.0
    assert 0.2 < p["a"][1] < 0.8 and abs(p["a"][1] + p["b"][1] - 1) < 1e-9
    for rank in range(3):  # each rank is someone's, in every resample
        assert abs(sum(p[m][rank] for m in p) - 1) < 1e-9


def test_the_evaluation_says_how_sure_its_ranking_is(evaluated_run):
    from contract.files import EVAL_METRICS, read_run_file

    metrics = read_run_file(evaluated_run, EVAL_METRICS)
    ranking = metrics["ranking"]
    scores = metrics["scores"][metrics["headline_protocol"]]
    assert set(ranking["p_best"]) == set(scores) and abs(sum(ranking["p_best"].values()) - 1) < 1e-9
    best = max(scores, key=lambda m: scores[m]["rouge1"]["mean"])
    assert ranking["best"] == best and best in ranking["tied_at_top"]


def test_the_evaluation_records_summary_length_and_the_code_it_ran(evaluated_run):
    from contract.files import EVAL_METRICS, read_run_file

    metrics = read_run_file(evaluated_run, EVAL_METRICS)
    assert set(metrics["summary_length"]) == set(metrics["models"])
    assert all(v["mean_tokens"] > 0 for v in metrics["summary_length"].values())
    assert metrics["source"]["commit"] is None or len(metrics["source"]["commit"]) == 40
    assert metrics["source"]["dirty"] in (True, False, None)
    full = read_run_file(evaluated_run, "full/metrics.json")
    assert set(full["source"]) == {"commit", "dirty"}
