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


WORDS = "the quick brown fox jumps over the lazy dog again"  # ten words


def test_a_local_text_file_works_offline_and_a_bad_one_is_refused(tmp_path):
    (tmp_path / "web.txt").write_text("\n\n".join(f"{i} {WORDS}" for i in range(25)) + "\nshort line\n")
    texts, _ = retention.web_texts(str(tmp_path / "web.txt"))
    assert len(texts) == 25 and texts[0] == f"0 {WORDS}"  # the short line is left out
    (tmp_path / "web.jsonl").write_text(f'{{"text": "{WORDS}"}}\n{{"nope": 1}}\n')
    with pytest.raises(retention.RetentionDataError, match="line 2: .*'text' string field"):
        retention.web_texts(str(tmp_path / "web.jsonl"))
    with pytest.raises(retention.RetentionDataError, match="no such file"):
        retention.web_texts(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("content, refusal", [
    (b"", "0 documents of 8 words or more"),
    (b'{"txt": "a b c d e f g h i"}\n', "line 1: every line of a .jsonl file must be a JSON object"),
    (b'{"text": 5}\n', "line 1: every line of a .jsonl file"),
    ("caf\u00e9 au lait ".encode("latin-1") * 20, "line 1 is not UTF-8 text"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not UTF-8 text"),
    (b"too short\n" * 500, "0 documents of 8 words or more \\(500 shorter left out\\)"),
])
def test_each_unusable_retention_file_is_one_line_naming_it(tmp_path, content, refusal):
    path = tmp_path / ("web.jsonl" if content.startswith(b"{") else "web.txt")
    path.write_bytes(content)
    with pytest.raises(retention.RetentionDataError, match=refusal):
        retention.check_retention_data(str(path))


def test_a_50_mb_line_is_read_past_with_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "web.txt"
    with path.open("w") as f:
        f.write("word " * 10_000_000 + "\n")  # one 50 MB line, then usable documents
        f.write("\n".join(f"{i} {WORDS}" for i in range(30)))
    tracemalloc.start()
    texts = retention.read_texts(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(texts) == 31 and len(texts[0]) == retention.MAX_DOCUMENT_CHARS
    assert peak < 5 * retention.MAX_LINE_BYTES * 4  # a few cut lines, never the whole 50 MB line


def test_a_bad_retention_file_stops_training_before_any_work(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    bad = tmp_path / "web.jsonl"
    bad.write_text('{"body": "no text field here at all, which is wrong"}\n')
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "training", "--preset", "tiny", "--methods", "lora", "--output_dir",
                           str(out), "--retention_data", str(bad)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "'text' string field" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_retention_sample_with_nothing_to_score_says_so_instead_of_nan(evaluated_run, tmp_path):
    from contract.files import ArtifactError, write_json
    from contract.loading import load_run_models

    kept = retention.retention(load_run_models(evaluated_run, "cpu"), [], "T5 span corruption", 10, 0)
    assert kept["models"] == {} and "no example" in kept["not_measured"]
    with pytest.raises(ArtifactError, match="field 'retention/models/full/loss' is not a finite number"):
        write_json(tmp_path / "m.json", {"retention": {"models": {"full": {"loss": float("nan")}}}}, None)
    assert not (tmp_path / "m.json").exists()


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
    assert kept["models"] == {} and "give --retention_data FILE" in kept["not_measured"]
    assert "retention skipped" in capsys.readouterr().out


def test_the_leaderboard_has_the_forgetting_column(evaluated_run):
    from dashboard.leaderboard import DIRECTIONS, leaderboard_frame
    from dashboard.run_data import load_run

    data = load_run(evaluated_run)
    board = leaderboard_frame([("tiny", lambda m: m, data)])
    assert "forgetting (Δ loss)" in DIRECTIONS
    assert board.set_index("model").loc["full", "forgetting (Δ loss)"] == data.evaluation["retention"]["models"][
        "full"]["change"]
