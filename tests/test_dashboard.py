import shutil

import gradio as gr
import pytest

from contract.files import EVAL_METRICS, has_trained
from dashboard import figures, frames
from dashboard import run_data as rd
from dashboard.handlers import AppState, example_choices, example_details, make_summarize_api
from dashboard.inputs import MAX_CHARS, InputError, Settings, check_text
from dashboard.serving import load_models

MODEL_ORDER = ["base", "full", "lora"]

DIALOGUE = "#Person1#: I'd like to book a table for four, please.\n#Person2#: Certainly. For which day?"


@pytest.fixture(scope="session")
def state(evaluated_run):
    return AppState(data=rd.load_run(evaluated_run), models=load_models(evaluated_run))


def summarize_all(state, text, settings):
    return state.models.submit(text, settings, models=state.names).result()


def test_run_data_frames(state):
    data = state.data
    assert set(data.train) == {"full", "lora"} and data.problems == []
    rouge = frames.rouge_frame(data.evaluation)
    ours = rouge[rouge["series"] == "This run"]
    assert len(ours) == 12 and (ours["ci_low"] <= ours["mean"]).all() and (ours["mean"] <= ours["ci_high"]).all()
    assert len(rouge[rouge["series"] == rd.LAB_LABEL]) == 12
    assert set(frames.loss_frame(data.train)["split"]) == {"train", "eval"}
    table = frames.summary_table(data)
    assert list(table["model"]) == [data.label(m) for m in MODEL_ORDER] and "[" in table["ROUGE-1"][1]
    assert len(data.predictions) == 8 and "spread" in data.predictions


def test_figures_carry_traces_labels_and_error_bars(state):
    data = state.data
    fig = figures.rouge_bars(frames.rouge_frame(data.evaluation), data.labels)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == [data.label(m) for m in MODEL_ORDER]
    assert all(t.error_y.array is not None and len(t.error_y.array) == 4 for t in bars)
    assert sum(t.type == "scatter" and rd.LAB_LABEL in t.name for t in fig.data) == 3
    params = figures.parameter_bars(frames.parameters_frame(data.train), data.labels)
    assert params.layout.yaxis.type == "log" and len(params.data) == 2
    assert len(figures.cost_bars(frames.cost_frame(data.train), data.labels).data) == len(figures.COST_PANELS)
    loss = figures.loss_curves(frames.loss_frame(data.train), data.labels)
    assert len(loss.data) == 4 and loss.layout.yaxis.type == "log"
    tradeoff = figures.tradeoff_scatter(frames.tradeoff_frame(data), data.labels)
    assert len(tradeoff.data) == 8  # 4 panels: points + frontier


def test_missing_pieces_give_an_empty_state_not_an_exception(evaluated_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("eval"))
    data = rd.load_run(run)
    assert data.evaluation is None and data.predictions is None
    fig = figures.tradeoff_scatter(frames.tradeoff_frame(data), data.labels)
    assert fig.layout.annotations and "evaluation" in fig.layout.annotations[0].text
    assert figures.rouge_bars(frames.rouge_frame(None, with_lab=False), data.labels).layout.annotations
    assert example_choices(None) == []
    (run / "eval").mkdir()
    (run / EVAL_METRICS).write_text("{broken")
    assert any("not valid JSON" in p for p in rd.load_run(run).problems)


def test_newest_finished_run_ignores_incomplete_and_unevaluated_folders(evaluated_run, tmp_path):
    shutil.copytree(evaluated_run, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text("{}")
    assert rd.newest_finished_run(tmp_path) == tmp_path / "a"
    assert rd.newest_finished_run(tmp_path / "b") is None
    shutil.rmtree(tmp_path / "a" / "eval")  # trained, not evaluated: an interrupted build
    assert has_trained(tmp_path / "a") and rd.newest_finished_run(tmp_path) is None
    assert rd.complete_runs(tmp_path) == ([], [tmp_path / "a"])


def test_an_interrupted_demo_is_resumed_by_the_next_start_never_served_half_built(evaluated_run, tmp_path,
                                                                                   monkeypatch):
    """The demo killed after `full` trained (no LoRA, no evaluation): the next `python app.py` builds it again with
    --resume instead of serving base + full."""
    import app

    demo = tmp_path / "artifacts" / "tiny"
    shutil.copytree(evaluated_run, demo)
    shutil.rmtree(demo / "eval")
    shutil.rmtree(demo / "lora")
    monkeypatch.setattr(app, "ROOT", tmp_path)
    assert app.choose_run(None) is None and app.choose_run(None, "tiny") is None
    started = {}
    monkeypatch.setattr(app.subprocess, "Popen", lambda command, **kw: started.setdefault("command", command))
    app.start_build("tiny", [])
    assert started["command"][-1] == "--resume" and str(demo) in started["command"]
    served_by_name = app.create_app(demo, tmp_path / "votes.sqlite")  # asked for by name: served, said incomplete
    assert "This run is incomplete" in served_by_name.app_state.demo_notice


def test_summarize_handler_returns_three_labelled_outputs(state):
    out = make_summarize_api(state)(DIALOGUE, "#Person1# books a table for four.")
    texts, labels, table, notice = out[:3], out[3:6], out[6], out[7]
    assert all(isinstance(t, str) and t for t in texts)
    assert all("tokens" in label and " s " in label for label in labels)
    assert [row[0] for row in table["data"]] == [state.data.label(m) for m in MODEL_ORDER] and notice == ""
    assert table["headers"] == ["model", *rd.METRIC_LABELS.values()]


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * (MAX_CHARS + 1), "?!... --- :) 🙂 🙂"])
def test_bad_input_is_a_message_without_a_model_call(state, text, monkeypatch):
    monkeypatch.setattr(state.models, "batcher", None)  # any model call would fail loudly
    with pytest.raises(gr.Error):
        make_summarize_api(state)(text)
    with pytest.raises(InputError):
        check_text(text)


def test_long_input_is_truncated_with_a_notice(state):
    long = "\n".join(f"#Person{1 + i % 2}#: We talk about the weather on day {i} again." for i in range(120))
    notice = make_summarize_api(state)(long)[7]
    assert "truncated to 512 tokens" in notice


@pytest.mark.parametrize(
    "text", ["Привет! Как дела? 你好，今天怎么样？", "🙂🙂 ok 🎉", "one line without speaker tags"]
)
def test_any_text_works(state, text):
    results = summarize_all(state, text, Settings(max_new_tokens=8))
    assert set(results) == {"base", "full", "lora"} and not any(r.error for r in results.values())


def test_sampling_is_reproducible_for_a_seed(state):
    s = Settings(max_new_tokens=12, do_sample=True, temperature=1.5, seed=7)
    first = summarize_all(state, DIALOGUE, s)
    second = summarize_all(state, DIALOGUE, s)
    assert {m: r.text for m, r in first.items()} == {m: r.text for m, r in second.items()}


def test_lora_output_differs_from_base_on_shared_weights(state):
    results = summarize_all(state, DIALOGUE, Settings(max_new_tokens=16))
    assert results["lora"].text != results["base"].text and results["lora"].shared_call


@pytest.mark.parametrize("broken", ["lora/adapter/adapter_model.safetensors", "full/model/model.safetensors"])
def test_corrupt_checkpoint_leaves_the_other_models_serving(evaluated_run, tmp_path, broken):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    (run / broken).write_bytes(b"not a safetensors file")
    models = load_models(run)
    bad = "lora" if "adapter" in broken else "full"
    errors = models.loaded.errors
    assert set(errors) == {bad} and "safetensor" in errors[bad].lower()
    state = AppState(data=rd.load_run(run), models=models)
    texts = make_summarize_api(state)(DIALOGUE)[:3]
    by_model = dict(zip(MODEL_ORDER, texts))
    assert by_model[bad].startswith("(unavailable)")
    assert all(not t.startswith("(unavailable)") for m, t in by_model.items() if m != bad)


def test_examples_sort_and_show_per_example_rouge(state):
    preds = state.data.shown_predictions
    held = state.data.battle_predictions
    assert len(preds) + len(held) == len(state.data.predictions) and not set(preds["id"]) & set(held["id"])
    assert example_details(state.data, held["id"][0])[0] == ""  # a battle dialogue is never shown with names
    by_disagreement = [value for _, value in example_choices(preds, "disagreement between methods")]
    gaps = preds.set_index("id").loc[by_disagreement, "spread"].tolist()
    assert gaps == sorted(gaps, reverse=True)
    by_length = [value for _, value in example_choices(preds, "dialogue length")]
    assert preds.set_index("id").loc[by_length, "dialogue_chars"].is_monotonic_decreasing
    dialogue, refs, base, full, lora, scores = example_details(state.data, by_disagreement[0])
    assert dialogue and refs.startswith("1. ") and full
    assert list(scores.columns) == ["model", *rd.METRIC_LABELS.values()] and len(scores) == 3


def test_a_broken_evaluation_is_named_not_called_missing(evaluated_run, tmp_path):
    from dashboard.metrics_tab import protocol_line

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    assert protocol_line(rd.load_run(run)).startswith("**Protocol.**")
    (run / EVAL_METRICS).write_text("{broken")
    data = rd.load_run(run)
    assert protocol_line(data) is None and any("not valid JSON" in p for p in data.problems)
    shutil.rmtree(run / "eval")
    assert "No evaluation yet" in protocol_line(rd.load_run(run))


def test_a_too_long_reference_gets_a_message_about_references():
    with pytest.raises(InputError, match="reference has 20,001 characters.*paste the summary only") as refused:
        check_text("x" * 20_001, "reference", required=False)
    assert "tokens" not in str(refused.value)


def test_every_model_of_a_catalogue_run_gets_a_colour():
    names = ["base", "full", "lora", *[f"method_{i}" for i in range(80)]]  # more than the palette holds
    colors = figures.colors_for(names)
    assert list(colors) == names and len(set(list(colors.values())[:40])) == 40


def test_a_crowded_frontier_chart_names_only_the_frontier():
    import pandas as pd

    n = 30
    frame = pd.DataFrame(
        {
            "method": [f"m{i}" for i in range(n)],
            "rouge1": [0.1 + 0.01 * (i % 7) for i in range(n)],
            "ci_low": 0.05,
            "ci_high": 0.5,
            "trainable": range(1, n + 1),
            "train_seconds": range(n, 0, -1),
            "peak_memory_bytes": 1e6,
            "checkpoint_bytes": 1e5,
        }
    )
    fig = figures.tradeoff_scatter(frame, {})
    points = fig.data[0]
    named = {t for t in points.text if t}
    assert named == set(figures.pareto_front(frame, "trainable")["method"]) and len(named) < n
    assert list(points.customdata) == list(frame["method"])  # every point still has its name on hover


def test_examples_tab_builds_when_every_evaluated_dialogue_is_held_back(state):
    """A small evaluation (--limit 2) can fall wholly on the battle side: the tab says so instead of failing."""
    import dataclasses

    import gradio as gr

    from dashboard.examples_tab import build_examples_tab

    data = dataclasses.replace(state.data, predictions=state.data.battle_predictions)
    assert data.shown_predictions.empty and len(data.predictions) > 0
    with gr.Blocks() as demo:
        build_examples_tab(demo, dataclasses.replace(state, data=data))
    assert any("kept for blind battles" in (getattr(b, "value", "") or "") for b in demo.blocks.values())


def test_the_leaderboard_names_a_tiny_base_as_a_person_knows_it(evaluated_run):
    from dashboard.leaderboard import leaderboard_frame

    frame = leaderboard_frame([("tiny", lambda m: m, rd.load_run(evaluated_run))])
    assert set(frame["base model"]) == {rd.load_run(evaluated_run).base_name}
    assert frame["base model"].iloc[0].startswith("a tiny T5 built by this run")


def test_a_tiny_base_is_sized_from_its_own_weights_whatever_methods_the_run_trained(evaluated_run, tmp_path):
    data = rd.load_run(evaluated_run)
    size = data.train["full"]["parameters"]["total"]  # full fine-tuning trains every weight of the base
    assert data.base_name == f"a tiny T5 built by this run, {size / 1e6:.1f} M parameters"
    data.train.pop("full")  # a run of adapters only names its base's size too
    assert data.base_name.endswith(f"{size / 1e6:.1f} M parameters")
    broken = tmp_path / "run"
    shutil.copytree(evaluated_run, broken)
    (broken / "base" / "model" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    assert rd.load_run(broken).base_name == "a tiny T5 built by this run"  # unreadable: no size, no error


def test_the_app_reads_each_file_of_its_run_once_at_start_up(evaluated_run, tmp_path, monkeypatch):
    """One in-memory model of the run (dashboard/run_data.py) feeds the page, the models and the int8 check: no
    JSON file of the run is read twice while the app is built (eval/predictions.jsonl is read with its metrics)."""
    from collections import Counter

    import app
    from contract import files

    reads = Counter()
    real = files.read_json

    def counted(path, schema):
        reads[str(path)] += 1
        return real(path, schema)

    monkeypatch.setattr(files, "read_json", counted)
    demo = app.create_app(evaluated_run, tmp_path / "votes.sqlite")
    try:
        assert reads and max(reads.values()) == 1, {p: n for p, n in reads.items() if n > 1}
        assert str(evaluated_run / "run.json") in reads and str(evaluated_run / "lora" / "metrics.json") in reads
    finally:
        app.close_app(demo)
