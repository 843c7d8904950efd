"""Many runs in one app: models of every run in Compare and the API, the Leaderboard (/runs_table, filters, test
sets grouped apart, CSV = the rows shown, links that reopen a view), shared bases; and training curves
(--report_to)."""

import csv
import shutil

import pandas as pd
import pytest

from tests.helpers import CHROMIUM, DIALOGUES, browser_page, free_port, tiny_config


@pytest.fixture(scope="module")
def three_runs(evaluated_run, methods_run, tmp_path_factory):
    """(tiny: full+lora on 8 test dialogues; its copy, same base and test set, lora only; all: every core method
    and a user config on 4 test dialogues)."""
    copy = tmp_path_factory.mktemp("copies") / "tiny-copy"
    shutil.copytree(evaluated_run, copy, ignore=shutil.ignore_patterns("votes*", "full"))
    return [evaluated_run, copy, methods_run]


@pytest.fixture(scope="module")
def many(three_runs):
    import app

    demo = app.create_app(three_runs)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    yield demo, f"http://127.0.0.1:{port}/"
    app.close_app(demo)


def test_runs_table_has_every_run_and_ranks_only_within_a_test_set(many, three_runs):
    from gradio_client import Client

    demo, url = many
    rows = pd.DataFrame(Client(url, verbose=False).predict(api_name="/runs_table"))
    names = [f.name for f in three_runs]
    assert names == ["tiny", "tiny-copy", "all"]
    assert set(rows["run"]) == set(names)
    assert set(rows[rows["run"] == "all"]["model"]) >= {"all/lora", "all/ia3", "all/lora_r4_qk", "all/base"}
    assert set(rows[rows["run"] == "tiny"]["model"]) == {"tiny/base", "tiny/full", "tiny/lora"}
    assert rows[["ROUGE-1", "ROUGE-1 low", "ROUGE-1 high", "train s", "peak memory MiB"]].notna().all().all() or \
        rows[rows["model"].str.endswith("/base")]["train s"].eq(0).all()
    trained = rows[~rows["model"].str.endswith("/base")]
    assert trained[["train s", "peak memory MiB", "checkpoint MiB", "trainable params"]].gt(0).all().all()
    assert (rows["ROUGE-1 low"] <= rows["ROUGE-1"]).all() and (rows["ROUGE-1"] <= rows["ROUGE-1 high"]).all()
    # the copy shares the original's test set; "all" was evaluated on 4 dialogues: a test set of its own
    sets = rows.groupby("run")["test set"].first()
    assert sets["tiny"] == sets["tiny-copy"] != sets["all"]
    assert sets["tiny"].startswith("8 dialogues") and sets["all"].startswith("4 dialogues")
    for _, group in rows.groupby("test set"):  # ranks restart in each test set, by ROUGE-1
        assert group["rank"].min() == 1
        ordered = group.sort_values("rank")
        assert ordered["ROUGE-1"].is_monotonic_decreasing
    from dashboard.leaderboard import filtered  # a run filtered out: the others are ranked among themselves
    for _, group in filtered(rows, ["tiny", "all"]).groupby("test set"):
        assert group["rank"].min() == 1 and group["rank"].max() <= len(group)
    # the same model's files in both copies: the same scores
    same = rows.set_index("model")
    assert same.loc["tiny/lora", "ROUGE-1"] == same.loc["tiny-copy/lora", "ROUGE-1"]
    # identical bases are held once, different ones apart (the tiny base's copy pre-training is deterministic: the
    # "all" run's base may be byte-identical to tiny's, and is then shared too)
    from contract.loading import base_identity

    runs = demo.app_state.runs.runs
    assert runs[0].models.loaded.base is runs[1].models.loaded.base
    same_files = base_identity(runs[0].models.loaded.base_path) == base_identity(runs[2].models.loaded.base_path)
    assert (runs[0].models.loaded.base is runs[2].models.loaded.base) == same_files


def test_summarize_all_answers_for_models_of_every_run(many, evaluated_run):
    from gradio_client import Client

    from dashboard.handlers import AppState, make_summarize_all_api
    from dashboard.run_data import load_run
    from dashboard.serving import load_models

    demo, url = many
    answers = Client(url, verbose=False).predict(DIALOGUES[4], api_name="/summarize_all")
    assert {"tiny/full", "tiny/lora", "tiny-copy/lora", "all/ia3", "all/prompt_tuning", "all/base"} <= set(answers)
    assert all("summary" in v and v["seconds"] > 0 for v in answers.values())
    alone = make_summarize_all_api(AppState(data=load_run(evaluated_run), models=load_models(evaluated_run)))(
        DIALOGUES[4])
    for model in ("base", "full", "lora"):  # served with other runs = served alone
        assert answers[f"tiny/{model}"]["summary"] == alone[model]["summary"]
    assert answers["tiny-copy/lora"]["summary"] == alone["lora"]["summary"]


@pytest.mark.slow
@pytest.mark.browser
def test_a_link_reopens_the_leaderboard_with_a_run_filtered_out_and_the_csv_is_the_table(many, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    from tests.helpers import screenshots

    _, url = many
    with browser_page(f"{url}?runs=tiny,all&tab=leaderboard&models=tiny/lora,all/ia3&family=nonsense") as page:
        table = page.locator("#lb-table")
        page.locator("#lb-plot .js-plotly-plot").wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelector('#lb-link').innerText.includes('runs=tiny%2Call')",
                               timeout=30_000)
        assert page.get_by_role("tab", name="Leaderboard", selected=True).count() == 1
        shown = table.inner_text()
        assert "tiny/lora" in shown and "all/ia3" in shown and "tiny-copy/" not in shown
        assert "family=nonsense is not in this app" in page.locator("#lb-link-problems").inner_text()
        assert "different test sets" in page.locator("#lb-groups").inner_text()
        cells = page.evaluate("() => new Set(Array.from(document.querySelectorAll('#lb-table [role=row]'))"
                              ".map(r => r.getAttribute('aria-rowindex')).filter(i => i > 1)).size")
        with page.expect_download() as download:
            page.locator("#lb-csv").click()
        path = tmp_path / "rows.csv"
        download.value.save_as(path)
        rows = list(csv.DictReader(path.open()))
        assert len(rows) == cells and {r["run"] for r in rows} == {"tiny", "all"}
        assert all(r["model"] in shown for r in rows)
        page.screenshot(path=str(screenshots() / "leaderboard.png"), full_page=True)
        page.get_by_role("tab", name="Compare").click()
        assert page.locator("#out-tiny--lora").is_visible() and page.locator("#out-all--ia3").is_visible()
        assert not page.locator("#out-tiny--base").is_visible()


def test_query_views_round_trip_and_name_what_they_cannot_show():
    from dashboard.leaderboard_tab import View, query_of, view_from_query

    frame = pd.DataFrame({"run": ["a", "a", "b"], "base model": ["x", "x", "y"], "preset": ["tiny"] * 3,
                          "family": ["LoRA family", "full fine-tuning", "LoRA family"]})
    view = view_from_query({"runs": "b,zz", "tab": "leaderboard", "family": "LoRA family", "merges": "yes",
                            "x": "train s", "models": "a/lora"}, frame, ["a/lora", "b/lora"])
    assert view.runs == ["b"] and view.tab == "leaderboard" and view.merges and view.x == "train s"
    assert view.choices["family"] == ["LoRA family"] and view.models == ["a/lora"]
    assert view.problems == ["runs=zz is not in this app (it has: a, b)"]
    again = view_from_query(dict(p.split("=") for p in query_of(view, ["a", "b"])[1:].replace("+", " ")
                                 .replace("%2F", "/").split("&")), frame, ["a/lora", "b/lora"])
    assert (again.runs, again.choices, again.merges, again.x, again.models) == \
        (view.runs, view.choices, view.merges, view.x, view.models) and not again.problems
    assert view_from_query({}, frame, []).runs == ["a", "b"] and View().tab == "compare"


def test_pareto_frontier_follows_each_columns_direction():
    from dashboard import leaderboard as lb

    frame = pd.DataFrame({"run": ["r"] * 4, "method": list("abcd"), "family": ["LoRA family"] * 4,
                          "test set": ["t"] * 4, "trainable params": [10, 100, 50, 1000],
                          "ROUGE-1": [0.30, 0.40, 0.25, 0.41]})
    fig = lb.pareto_chart(frame, "trainable params", "ROUGE-1")
    front = next(t for t in fig.data if t.name.startswith("frontier"))
    assert list(front.x) == [10, 100, 1000]  # c (more parameters and lower ROUGE than a) is dominated
    frame["ROUGE-2"] = [0.10, 0.20, 0.30, 0.05]  # both higher-is-better: a is dominated by b, the rest are not
    fig = lb.pareto_chart(frame, "ROUGE-2", "ROUGE-1")
    front = next(t for t in fig.data if t.name.startswith("frontier"))
    assert set(front.x) == {0.20, 0.30, 0.05}


def test_runs_dir_serves_every_complete_run_and_refuses_an_empty_folder(three_runs, tmp_path, monkeypatch, capsys):
    import app

    root = tmp_path / "runs"
    for run in three_runs[:2]:
        shutil.copytree(run, root / "group" / run.name, ignore=shutil.ignore_patterns("votes*"))
    found = app.runs_asked(None, [str(root)])
    assert sorted(p.rsplit("/", 1)[1] for p in found) == ["tiny", "tiny-copy"]
    monkeypatch.delenv("RUN_REPO", raising=False)
    monkeypatch.setenv("ARTIFACTS_DIR", f"{three_runs[0]}, {three_runs[2]}")
    assert app.runs_asked(None, None) == [str(three_runs[0]), str(three_runs[2])]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as refused:
        app.runs_asked(None, [str(tmp_path / "empty")])
    assert refused.value.code == 2 and "no finished run (trained and evaluated)" in capsys.readouterr().err


def test_report_to_tensorboard_writes_event_files(tmp_path):
    from training import finetune
    from training.methods import BUILTIN

    run_dir = tmp_path / "curves"
    finetune.run(tiny_config(run_dir, max_steps=2, eval_steps=2, report_to="tensorboard"), BUILTIN["lora"])
    events = list((run_dir / "tensorboard" / "lora").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert any("loss" in tag for tag in scalars)


def test_report_to_a_missing_package_is_one_line():
    import importlib.util

    from training.config import ConfigError
    from training.preflight import check_report_to

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match="--report_to wandb: the wandb package is not installed"):
        check_report_to("wandb")


def test_bases_are_shared_only_when_their_weights_are_identical(evaluated_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from contract.loading import load_base

    base = evaluated_run / "base" / "model"
    copy, changed = tmp_path / "copy", tmp_path / "changed"
    shutil.copytree(base, copy)
    shutil.copytree(base, changed)
    [weights] = changed.glob("*.safetensors")
    tensors = load_file(weights)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    shared = {}
    one = load_base(str(base), "cpu", torch.float32, shared)
    assert load_base(str(copy), "cpu", torch.float32, shared) is one
    assert load_base(str(changed), "cpu", torch.float32, shared) is not one and len(shared) == 2
