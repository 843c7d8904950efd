"""What each method forgets: the retention score in the evaluation, its text source (the Hub at the library
boundary, a local file, offline) and T5's span corruption."""

import random

import pytest

from training import retention


def test_the_tiny_evaluation_records_each_models_forgetting_with_an_interval(evaluated_run):
    from contract.files import EVAL_METRICS, read_run_file

    kept = read_run_file(evaluated_run, EVAL_METRICS)["retention"]
    assert kept["task"].startswith("copy pre-training") and kept["n_examples"] == 8
    assert kept["models"]["base"]["change"] == 0.0
    for name in ("full", "lora"):
        r = kept["models"][name]
        assert r["ci_low"] <= r["change"] <= r["ci_high"] and r["loss"] > 0


def test_span_corruption_hides_spans_behind_sentinels_and_the_target_restores_them():
    ids, sentinels = list(range(100, 160)), [1, 2, 3, 4, 5, 6, 7, 8]
    source, target = retention.span_corruption(ids, sentinels, eos=0, rng=random.Random(0))
    assert source[-1] == 0 and target[-1] == 0 and any(s in source for s in sentinels)
    hidden = [t for t in target[:-1] if t not in sentinels]
    kept = [t for t in source[:-1] if t not in sentinels]
    assert sorted(hidden + kept) == ids  # every token is either kept or to be predicted, once
    assert 0.05 < len(hidden) / len(ids) < 0.3


def test_the_hub_text_is_c4_through_datasets_at_the_library_boundary(monkeypatch):
    """STAND-IN for datasets.load_dataset (no Hub here): it records what was asked and streams three documents."""
    import datasets

    asked = {}

    def load_dataset(name, config, split, streaming):  # STAND-IN
        asked.update(name=name, config=config, split=split, streaming=streaming)
        return iter([{"text": f"document {i}"} for i in range(3)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    texts, where = retention.web_texts("hub", limit=2)
    assert texts == ["document 0", "document 1"] and "allenai/c4" in where
    assert asked == {"name": "allenai/c4", "config": "en", "split": "validation", "streaming": True}


def test_a_local_text_file_works_offline_and_a_bad_one_is_refused(tmp_path):
    (tmp_path / "web.txt").write_text("one document\n\nanother document\n")
    assert retention.web_texts(str(tmp_path / "web.txt"))[0] == ["one document", "another document"]
    (tmp_path / "web.jsonl").write_text('{"text": "a"}\n{"nope": 1}\n')
    with pytest.raises(retention.RetentionDataError, match="'text' field"):
        retention.web_texts(str(tmp_path / "web.jsonl"))
    with pytest.raises(retention.RetentionDataError, match="no such file"):
        retention.web_texts(str(tmp_path / "missing.txt"))


def test_offline_a_real_presets_evaluation_goes_on_without_retention_and_says_so(evaluated_run, capsys,
                                                                                 monkeypatch):
    """STAND-IN for datasets.load_dataset offline: it raises as the library does without a connection."""
    import datasets

    from contract.loading import load_run_models

    def offline(*args, **kwargs):  # STAND-IN
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    from training.evaluate import EvalConfig, retention_of

    loaded = load_run_models(evaluated_run, "cpu")
    kept = retention_of({"preset": "quick"}, loaded, ["#Person1#: hi"], EvalConfig(run=str(evaluated_run)))
    assert kept is None and "retention skipped" in capsys.readouterr().out


def test_the_leaderboard_has_the_forgetting_column(evaluated_run):
    from dashboard.leaderboard import DIRECTIONS, leaderboard_frame
    from dashboard.run_data import load_run

    data = load_run(evaluated_run)
    board = leaderboard_frame([("tiny", lambda m: m, data)])
    assert "forgetting (Δ loss)" in DIRECTIONS
    assert board.set_index("model").loc["full", "forgetting (Δ loss)"] == data.evaluation["retention"]["models"][
        "full"]["change"]
