"""The fifth reliability round: a bucket-backed vote store used from many threads, a votes path that is not a file,
a vote mirror with bad lines, outside text that must stay text (CSV formulas, Markdown links), run files with
values no run writes, an int8 cache written by two processes or left truncated, and what publishing may take."""

import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from contract.files import RUN_JSON, ArtifactError, method_metrics, read_json, read_run_file, run_files
from contract.untrusted import csv_cell, csv_safe, plain
from dashboard import votes as vt
from tests.helpers import ROOT

# --- votes -----------------------------------------------------------------------------------------------------

BATTLES = itertools.count()


def battle(store, dialogue="#Person1#: hi"):
    """A battle with summaries no earlier battle showed (a revealed summary shown again is flagged seen_named)."""
    n = next(BATTLES)
    return store.add_battle("test", dialogue, "test_1", "full", "lora", f"summary one {n}", f"summary two {n}")


@pytest.mark.parametrize("journal", vt.JOURNALS)
def test_the_vote_store_serves_any_thread_in_both_journal_modes(tmp_path, journal):
    store = vt.VoteStore(tmp_path / "votes.sqlite", journal=journal)

    def battle_and_vote(i):
        store.record_named_request(f"client{i}", f"a text {i}")
        b = battle(store, f"#Person1#: dialogue {i}")
        return store.cast(b.id, "a", f"client{i}")["flag"]

    with ThreadPoolExecutor(8) as pool:  # threads other than the one that opened the store, as Gradio's workers
        flags = list(pool.map(battle_and_vote, range(40)))
    assert flags == [None] * 40
    assert len(store.votes_frame()) == 40


@pytest.fixture(scope="module")
def bucket_server(evaluated_run, tmp_path_factory):
    """The app as a Space with --votes_bucket runs it: VOTES_JOURNAL=delete."""
    import app
    from tests.helpers import launched

    db = tmp_path_factory.mktemp("bucket") / "votes.sqlite"
    with launched(app.create_app(evaluated_run, db, votes_journal="delete")) as url:
        yield url, db


@pytest.mark.slow
def test_a_bucket_backed_app_serves_compare_the_api_and_votes_to_concurrent_clients(bucket_server):
    from gradio_client import Client

    url, db = bucket_server
    dialogue = "#Person1#: Where is the station?\n#Person2#: Two blocks north, next to the bank."

    def visitor(i):
        client = Client(url, verbose=False)
        summaries = client.predict(dialogue + f" Visitor {i}.", api_name="/summarize_all")
        b = client.predict("", api_name="/vote_battle")
        client.predict(b["battle_id"], "tie", api_name="/vote_cast")
        return summaries, b["battle_id"]

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(visitor, range(6)))
    assert all(isinstance(s, dict) and s for s, _ in answers)
    votes = vt.VoteStore(db, journal="delete").votes_frame()
    assert set(votes["battle_id"]) >= {b for _, b in answers}


def test_a_votes_path_that_is_a_folder_is_refused_and_nothing_is_moved(tmp_path):
    folder = tmp_path / "my-run"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    with pytest.raises(vt.VotesPathError, match="is a folder"):
        vt.VoteStore(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-run"] and (folder / "run.json").exists()
    with pytest.raises(vt.VotesPathError, match="does not exist"):
        vt.VoteStore(tmp_path / "no" / "such" / "votes.sqlite")
    assert not (tmp_path / "no").exists()


def test_only_a_file_that_fails_the_integrity_check_is_moved_aside(tmp_path):
    sound = tmp_path / "votes.sqlite"
    battle(vt.VoteStore(sound))
    again = vt.VoteStore(sound)
    assert again.notice is None and len(list(tmp_path.glob("*.unreadable-*"))) == 0
    garbage = tmp_path / "other.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    moved = vt.VoteStore(garbage)
    assert "integrity check" in moved.notice and len(list(tmp_path.glob("other.sqlite.unreadable-*"))) == 1


APP_CASES = {  # argv, environment, what the one line must say
    "port too big": (["--port", "99999"], {}, "--port '99999': give a whole number from 1 to 65535"),
    "port garbage in its variable": ([], {"GRADIO_SERVER_PORT": "http"}, "$GRADIO_SERVER_PORT 'http'"),
    "vote limit garbage": ([], {"VOTE_LIMIT_PER_HOUR": "lots"}, "$VOTE_LIMIT_PER_HOUR 'lots'"),
    "vote limit negative": (["--vote_limit_per_hour", "-1"], {}, "--vote_limit_per_hour '-1'"),
    "journal garbage": ([], {"VOTES_JOURNAL": "wall"}, "$VOTES_JOURNAL 'wall': use one of wal, delete"),
    "backend garbage": ([], {"SERVING_BACKEND": "fast"}, "$SERVING_BACKEND 'fast': use one of exact, int8"),
    "rows zero": (["--max_batch_rows", "0"], {}, "--max_batch_rows '0'"),
    "wait not finite": (["--max_wait_ms", "inf"], {}, "--max_wait_ms 'inf'"),
    "votes dataset not a repo": (["--votes_dataset", "votes"], {}, "--votes_dataset 'votes'"),
    "votes db a folder": (["--votes_db", "/tmp"], {}, "--votes_db /tmp is a folder"),
    "votes db in a missing folder": ([], {"VOTES_DB": "/no/such/votes.sqlite"}, "$VOTES_DB /no/such/votes.sqlite"),
    "unknown option with runs": (
        ["--run", "a", "--run", "b", "--bogus_opt", "1"],
        {},
        "unknown option(s) --bogus_opt",
    ),
    "preset and run": (["--preset", "tiny", "--run", "a"], {}, "give one of them"),
    "unknown preset": (["--preset", "huge"], {}, "invalid choice: 'huge'"),
    "int8 on zero gpu": (["--backend", "int8"], {"SPACES_ZERO_GPU": "true"}, "--backend int8 runs on the CPU"),
}


@pytest.mark.parametrize("case", APP_CASES)
def test_each_bad_app_option_or_variable_is_one_line_exit_2_before_any_work(case, monkeypatch, capsys):
    import app

    argv, env, expected = APP_CASES[case]
    for name in ("GRADIO_SERVER_PORT", "VOTE_LIMIT_PER_HOUR", "VOTES_JOURNAL", "SERVING_BACKEND", "VOTES_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        app.parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_one_run_spelled_two_ways_is_one_run(evaluated_run):
    import app

    spelled = [str(evaluated_run), str(evaluated_run) + "/", os.path.relpath(evaluated_run)]
    assert app.runs_asked(spelled, None) == [str(evaluated_run)]


PUBLISH_CASES = {
    "space id": (["--space", "a", "--run", "hf://me/run"], "--space 'a'"),
    "space run without a repo": (["--space", "me/s", "--run", "hf://run"], "hf://run: not a Hub location"),
    "repo option for a space": (
        ["--space", "me/s", "--run", "hf://me/run", "--repo", "me/x"],
        "--repo does not apply",
    ),
    "space option for a run": (["--run", "x", "--votes_bucket", "me/b"], "--votes_bucket does not apply"),
    "dry run repo id": (["--run", "x", "--repo", "not a repo", "--dry_run"], "--repo 'not a repo'"),
    "unknown option": (["--run", "x", "--bogus_opt", "1"], "unknown option(s) --bogus_opt"),
    "both card and dry run": (["--run", "x", "--card_only", "--dry_run"], "give one of them"),
}


@pytest.mark.parametrize("case", PUBLISH_CASES)
def test_each_bad_publish_option_is_one_line_exit_2(case, capsys):
    from training.publish import main as publish

    with pytest.raises(SystemExit) as exit_:
        publish(PUBLISH_CASES[case][0])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and PUBLISH_CASES[case][1] in err[0], err


@pytest.mark.parametrize("module,argv,expected", [
    ("training.evaluate", ["--limit", "0"], "--limit must be 1 or more"),
    ("training.evaluate", ["--batch_size", "0"], "--batch_size must be 1 or more"),
    ("training.evaluate", ["--prompt_template", "no placeholder"], "must contain {dialogue}"),
    ("training.evaluate", ["--bogus_opt"], "unknown option(s) --bogus_opt"),
    ("training.int8_quality", ["--run", "x", "--batch_size", "0"], "--batch_size must be 1 or more"),
    ("training.int8_quality", ["--run", "x", "--resamples", "-1"], "--resamples must be 1 or more"),
    ("training.int8_quality", [], "required: --run"),
])
def test_each_bad_evaluation_option_is_one_line_exit_2(module, argv, expected, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and expected in err[0], err


def mirror_lines(folder: Path, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "votes-old.jsonl").write_text("\n".join(lines) + "\n")


def test_the_mirror_restores_every_good_record_past_bad_lines_and_keeps_mirroring(tmp_path, monkeypatch):
    """STAND-INS at the huggingface_hub boundary: snapshot_download returns a local folder, CommitScheduler is a
    no-op. Everything else (reading, merging, the notice, mirroring) is the app's own."""
    import huggingface_hub

    import app

    remote = tmp_path / "remote"
    source = vt.VoteStore(tmp_path / "first.sqlite")
    good = []
    source.mirror = type("Collect", (), {"record": lambda self, kind, row: good.append({"kind": kind, **row})})()
    for i in range(3):
        b = battle(source, f"#Person1#: text {i}")
        source.cast(b.id, "b")
    newer = {**good[0], "id": "from-a-newer-app", "reactions": 3}  # a field this version does not know
    injected = {**good[0], "id": "quoted", 'id") VALUES (1); DROP TABLE votes; --': "x"}
    lines = [json.dumps(r) for r in good] + [
        json.dumps(newer),
        json.dumps(injected),
        "[1, 2]",
        '"text"',
        '{"kind": "vote", "battle_id": "nowhere"}',
        '{"kind": "battle", "id": "torn',
    ]
    mirror_lines(remote, lines)

    class Scheduler:  # STAND-IN
        def __init__(self, **kwargs):
            self.lock = threading.Lock()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(remote))  # STAND-IN
    monkeypatch.setattr(huggingface_hub, "CommitScheduler", Scheduler)
    (tmp_path / "restored").mkdir()
    restored = app.open_votes(tmp_path / "restored" / "votes.sqlite", 60, dataset="me/votes")
    frame = restored.votes_frame()
    assert len(frame) == 3 and set(frame["battle_id"]) == {r["battle_id"] for r in good if r["kind"] == "vote"}
    with closing_db(tmp_path / "restored" / "votes.sqlite") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM battles")}
        assert {"from-a-newer-app", "quoted"} <= ids
        assert db.execute("SELECT count(*) FROM votes").fetchone()[0] == 3  # the table is still there
    assert restored.mirror is not None, restored.notice
    assert "4 unusable record(s)" in restored.notice and "1 not JSON" in restored.notice
    battle(restored, "#Person1#: after the restart")
    assert list((tmp_path / "restored" / "vote-mirror").glob("*.jsonl"))  # still mirroring


def closing_db(path):
    from contextlib import closing

    return closing(sqlite3.connect(path))


def test_a_votes_database_that_disappears_pauses_voting_and_compare_goes_on(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    store = vt.VoteStore(folder / "votes.sqlite")
    b = battle(store)
    shutil.rmtree(folder)
    with pytest.raises(vt.VoteError, match="Voting is paused") as refused:
        store.record_named_request("someone", "a text")
    assert str(tmp_path) not in str(refused.value)
    with pytest.raises(vt.VoteError, match="Voting is paused"):
        store.cast(b.id, "a")


def test_a_full_disk_pauses_voting_with_one_line_and_voting_resumes_once_it_can_write(tmp_path, monkeypatch,
                                                                                       capsys):
    """ENOSPC injected where SQLite opens the database (as a full disk answers): at start-up nothing is left behind
    and the store starts paused; it resumes by itself, writing the named request it held first; one log line per
    change of state, not one per vote."""
    real_connect, disk = sqlite3.connect, {"full": True}

    def connect(*args, **kwargs):
        if disk["full"]:
            raise sqlite3.OperationalError("database or disk is full")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(vt.sqlite3, "connect", connect)
    monkeypatch.setattr(vt, "RETRY_SECONDS", 0)
    store = vt.VoteStore(tmp_path / "votes.sqlite")
    assert store.failed and list(tmp_path.iterdir()) == []  # no 0-byte votes.sqlite, no key
    for _ in range(3):
        with pytest.raises(vt.VoteError, match="Voting is paused: .*resumes by itself"):
            battle(store)
    with pytest.raises(vt.VoteError):
        store.record_named_request("someone", "#Person1#: a looked-up dialogue")
    disk["full"] = False
    b = battle(store)
    assert vt.text_hash("#Person1#: a looked-up dialogue") in store.named_texts()  # written before voting resumed
    disk["full"] = True  # the disk fills while serving
    for _ in range(3):
        with pytest.raises(vt.VoteError, match="Voting is paused"):
            store.cast(b.id, "a")
    disk["full"] = False
    assert store.cast(b.id, "a")["flag"] is None
    log = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].strip() for line in log if line.startswith("votes:")] == [
        "paused", "resumed", "paused", "resumed"]


def test_the_app_starts_with_voting_paused_when_its_store_cannot_be_created(evaluated_run, tmp_path, monkeypatch):
    import app
    from dashboard.vote_handlers import pool_line, ratings_view

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(vt.sqlite3, "connect", full)
    demo = app.create_app(evaluated_run, tmp_path / "votes.sqlite")
    state = demo.app_state
    assert state.votes.failed and not (tmp_path / "votes.sqlite").exists()
    assert pool_line(state).startswith("Voting is paused") and ratings_view(state)[0].startswith("Voting is paused")


def test_the_int8_line_names_the_run_not_the_servers_folder(evaluated_run):
    from dashboard import frames
    from dashboard import run_data as rd

    line = frames.int8_line(rd.load_run(evaluated_run))
    assert str(evaluated_run.parent) not in line and evaluated_run.name in line


def test_int8_advice_fits_the_run_folder(tmp_path, monkeypatch):
    from dashboard.int8_backend import retry_advice

    assert "Delete" not in retry_advice(tmp_path, "full")  # no cache folder: nothing to delete
    (tmp_path / ".int8" / "full").mkdir(parents=True)
    assert "Delete" in retry_advice(tmp_path, "full")
    monkeypatch.setattr("os.access", lambda path, mode: False)
    assert "read-only" in retry_advice(tmp_path, "full") and "Delete" not in retry_advice(tmp_path, "full")


# --- outside text stays text -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised(value):
    assert csv_cell(value) == "'" + value
    frame = csv_safe(pd.DataFrame({"run": [value], "ROUGE-1": [-0.5]}))
    assert frame["run"][0].startswith("'") and frame["ROUGE-1"][0] == -0.5  # numbers stay numbers


def test_plain_text_renders_as_itself_in_markdown():
    from markdown_it import MarkdownIt

    hostile = "[Your session expired](https://evil.example) ![x](https://evil.example/i.png) <b>x</b>"
    html = MarkdownIt().render(plain(hostile, limit=500))
    assert "<a " not in html and "<img" not in html and "<b>" not in html
    assert len(plain("x" * 10_000)) < 120


@pytest.mark.slow
@pytest.mark.browser
def test_a_hostile_deep_link_and_run_name_show_as_text_on_the_real_page(evaluated_run, tmp_path):
    """Through the real page in Chromium: a run folder named like a Markdown link and a link whose values are."""
    from tests.helpers import CHROMIUM, free_port

    if not CHROMIUM:
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    import app

    hostile_run = tmp_path / "[click](https:⁄⁄evil.example)"
    shutil.copytree(evaluated_run, hostile_run, ignore=shutil.ignore_patterns("votes.sqlite*"))
    demo = app.create_app([evaluated_run, hostile_run], tmp_path / "votes.sqlite")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    query = "?tab=leaderboard&runs=" + "%5BYour%20session%20expired%5D(https://evil.example)" + ",!%5Bx%5D(https://evil.example/i.png)"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/{query}")
            page.wait_for_selector("#lb-link-problems :text('left out')", timeout=60_000)
            links = page.eval_on_selector_all("a[href*='evil.example']", "els => els.map(e => e.outerHTML)")
            images = page.eval_on_selector_all("img[src*='evil.example']", "els => els.length")
            said = page.inner_text("#lb-link-problems")
            browser.close()
    finally:
        app.close_app(demo)
    assert links == [] and images == 0
    assert "Your session expired" in said and "evil.example" in said  # shown, as text


HOSTILE_LABEL = '<a href="https://evil.example">Click</a><b>bold</b> %{y} 100%'


def hostile_label_run(evaluated_run: Path, target: Path) -> Path:
    """A copy of the run whose LoRA label (metrics.json, as a user's config folder can set it) is HTML."""
    run = shutil.copytree(evaluated_run, target, ignore=shutil.ignore_patterns("votes.sqlite*", ".int8"))
    doc = json.loads((run / method_metrics("lora")).read_text())
    doc["method"]["label"] = HOSTILE_LABEL
    (run / method_metrics("lora")).write_text(json.dumps(doc))
    return Path(run)


def test_every_chart_shows_a_hostile_label_as_text(evaluated_run, tmp_path):
    from dashboard import figures, frames
    from dashboard import run_data as rd
    from dashboard import verdict_card as verdict
    from dashboard.leaderboard import leaderboard_frame, pareto_chart

    data = rd.load_run(hostile_label_run(evaluated_run, tmp_path / "run"))
    labels = data.labels
    charts = [figures.rouge_bars(frames.rouge_frame(data.evaluation), labels),
              figures.parameter_bars(frames.parameters_frame(data.train), labels),
              figures.cost_bars(frames.cost_frame(data.train), labels),
              figures.loss_curves(frames.loss_frame(data.train), labels),
              figures.tradeoff_scatter(frames.tradeoff_frame(data), labels),
              figures.slice_multiples(frames.slices_frame(data.evaluation), labels),
              figures.failure_bars(frames.failures_frame(data.evaluation), labels),
              verdict.chart(data, verdict.choice_of(data)),
              pareto_chart(leaderboard_frame([("<i>run</i>", lambda m: m, data)]), "trainable params", "ROUGE-1")]
    for fig in charts:
        text = fig.to_json()
        assert "<a href" not in text and "<b>bold" not in text and "%{y} 100" not in text and "<i>run" not in text
    shown_as_text = [fig for fig in charts if "&lt;a href=" in fig.to_json() and "&#37;{y} 100&#37;" in fig.to_json()]
    assert len(shown_as_text) >= 6  # the label is there, as its own characters


@pytest.mark.slow
@pytest.mark.browser
def test_a_hostile_label_is_no_link_or_markup_in_the_charts_of_the_real_page(evaluated_run, tmp_path):
    """Chromium on the Metrics tab of a run whose LoRA label is HTML: the charts show its characters, and no
    element of any chart is a link or bold text made from it."""
    from tests.helpers import CHROMIUM, ROOT, launched

    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    import app

    demo = app.create_app(hostile_label_run(evaluated_run, tmp_path / "run"), tmp_path / "votes.sqlite")
    with launched(demo) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Metrics").click()
        page.locator("#plot-verdict .js-plotly-plot").wait_for(timeout=30_000)
        for details in ("Cost vs quality on every cost", "Parameters, training cost", "Where methods fail"):
            page.get_by_text(details).click()
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=30_000)
        links = page.eval_on_selector_all(".js-plotly-plot svg.main-svg a", "els => els.map(e => e.outerHTML)")
        bold = page.eval_on_selector_all(".js-plotly-plot text tspan[style*='bold']", "els => els.length")
        chart_text = " ".join(page.eval_on_selector_all(".js-plotly-plot text", "els => els.map(e => e.textContent)"))
        shots = ROOT / "out" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "hostile-label-metrics.png"), full_page=True)
        browser.close()
    assert links == [] and bold == 0
    assert '<a href="https://evil.example">Click</a>' in chart_text  # shown as its own characters


# --- one bad run never takes down the others -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", str(2**70)])
def test_run_files_with_values_no_run_writes_are_refused(tmp_path, value):
    path = tmp_path / "metrics.json"
    path.write_text('{"x": ' + value + "}")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_json(path, "run.v1")


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("votes.sqlite*", ".int8"))
    return target


def test_a_run_or_method_that_fails_to_load_is_left_out_and_named(evaluated_run, tmp_path):
    import app
    from dashboard.page import left_out_rows

    broken_run = copy_run(evaluated_run, tmp_path / "broken-run")
    doc = json.loads((broken_run / RUN_JSON).read_text())
    doc["preset"] = 12  # fails the schema
    (broken_run / RUN_JSON).write_text(json.dumps(doc))
    broken_method = copy_run(evaluated_run, tmp_path / "broken-method")
    metrics = json.loads((broken_method / method_metrics("lora")).read_text())
    metrics["parameters"]["trainable"] = "Infinity"
    (broken_method / method_metrics("lora")).write_text(json.dumps(metrics).replace('"Infinity"', "Infinity"))

    demo = app.create_app([evaluated_run, broken_run, broken_method], tmp_path / "votes.sqlite")
    state = demo.app_state
    assert list(state.left_out) == ["broken-run"] and str(tmp_path) not in state.left_out["broken-run"]
    method_run = next(r for r in state.runs.runs if r.name == "broken-method")
    assert "lora" not in method_run.data.methods and "lora" in method_run.data.left_out
    rows = left_out_rows(state, ["run", "model"])
    assert {(r["run"], r["model"]) for r in rows} == {("broken-run", None), ("broken-method", "broken-method/lora")}
    from dashboard.leaderboard import leaderboard_frame

    board = leaderboard_frame([(r.name, lambda m, r=r: f"{r.name}/{m}", r.data) for r in state.runs.runs])
    assert "broken-method/lora" not in set(board["model"])  # never shown as base, 0 parameters, rank 1


# --- int8 cache --------------------------------------------------------------------------------------------------

CONVERT_FULL = """
import sys
from pathlib import Path
from contract import int8
from contract.files import base_model_location, read_run_file
from contract.loading import load_tokenizer

run = Path(sys.argv[1])
info = read_run_file(run, "run.json")
folder = int8.convert(run, base_model_location(run, info), "full", load_tokenizer(run, info), True, say=print)
int8.load_translator(folder)
print("loaded")
"""


@pytest.mark.slow
def test_two_processes_converting_one_run_both_get_a_whole_cache(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT_FULL, str(run)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 and "loaded" in out for p, out in zip(procs, outs)), outs
    assert sum("converting" in out for out in outs) == 1  # the second waited and found the first one's folder


def test_a_truncated_int8_cache_is_converted_again(evaluated_run, tmp_path):
    from contract import int8
    from contract.files import base_model_location
    from contract.loading import load_tokenizer
    from dashboard.int8_backend import translator_for

    run = copy_run(evaluated_run, tmp_path / "run")
    info = read_run_file(run, RUN_JSON)
    tokenizer, base = load_tokenizer(run, info), base_model_location(run, info)
    folder = int8.convert(run, base, "full", tokenizer, True, say=lambda _: None)
    model_bin = folder / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[:100])
    said = []
    translator = translator_for(run, base, "full", tokenizer, True, said.append)
    assert translator is not None and any("converting again" in s for s in said)
    assert model_bin.stat().st_size > 100


# --- publishing ------------------------------------------------------------------------------------------------

def test_publishing_takes_regular_files_inside_the_run_only(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path / "run")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (run / "full" / "model" / "x.json").symlink_to(secret)
    (run / "full" / "model" / "notes.txt").write_text("mine")
    (run / "full" / "model" / "extra.json").write_text("{}")
    (run / "lora" / "adapter" / "leak.json").symlink_to("/etc/passwd")
    files = run_files(run)
    assert not any(Path(f).name in ("x.json", "notes.txt", "extra.json", "leak.json") for f in files), files
    assert "full/model/model.safetensors" in files and "lora/adapter/adapter_model.safetensors" in files


def test_dry_run_writes_nothing_and_an_unfinished_run_is_refused(evaluated_run, tmp_path, capsys):
    from training.publish import main as publish

    run = copy_run(evaluated_run, tmp_path / "run")
    (run / "README.md").write_text("my own card")
    publish(["--run", str(run), "--dry_run"])
    assert (run / "README.md").read_text() == "my own card"
    said = capsys.readouterr().out
    weights = (run / "lora" / "adapter" / "adapter_model.safetensors").stat().st_size
    assert f"{weights:,} B  lora/adapter/adapter_model.safetensors" in said and " B  README.md" in said
    assert "--- the card ---" in said and "## Methods and cost" in said
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(run / RUN_JSON, empty / RUN_JSON)
    with pytest.raises(SystemExit) as exit_:
        publish(["--run", str(empty), "--repo", "me/x", "--dry_run"])
    assert exit_.value.code == 2 and "no complete method" in capsys.readouterr().err
    shutil.rmtree(run / "eval")
    with pytest.raises(SystemExit) as exit_:
        publish(["--run", str(run), "--repo", "me/x"])
    assert exit_.value.code == 2 and "no evaluation" in capsys.readouterr().err


def test_the_space_takes_only_files_git_tracks(tmp_path):
    from training import space

    stray = ROOT / "dashboard" / "scratch_untracked_test_file.py"
    stray.write_text("TOKEN = 'hf_secret'\n")
    try:
        files = space.code_files()
    finally:
        stray.unlink()
    assert "app.py" in files and "dashboard/votes.py" in files
    assert "dashboard/scratch_untracked_test_file.py" not in files
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert set(files) <= set(tracked)


def test_an_unknown_model_refusal_names_a_bounded_few():
    from dashboard.inputs import InputError, chosen_models

    with pytest.raises(InputError) as refused:
        chosen_models([f"model-{i}" * 20 for i in range(300)], ["base", "full", "lora"], ["base"], "this run")
    message = str(refused.value)
    assert "and 292 more" in message and len(message) < 800 and "this run has 3: base, full, lora" in message


@pytest.mark.parametrize("break_it, refusal", [
    (lambda run: replace_by_link(run / "lora" / "adapter" / "adapter_model.safetensors"),
     "lora/adapter/adapter_model.safetensors is a symlink"),
    (lambda run: replace_by_link(run / "lora" / "adapter"), "lora/adapter is a symlink"),
    (lambda run: (run / "lora" / "adapter" / "adapter_config.json").unlink(),
     "lora/adapter/adapter_config.json is missing"),
    (lambda run: replace_by_link(run / "full" / "metrics.json"), "full/metrics.json is a symlink"),
])
def test_publishing_refuses_a_run_it_cannot_send_whole(evaluated_run, tmp_path, capsys, break_it, refusal):
    from training.publish import main as publish

    run = copy_run(evaluated_run, tmp_path / "run")
    break_it(run)
    with pytest.raises(SystemExit) as exit_:
        publish(["--run", str(run), "--repo", "me/x", "--dry_run"])
    said = capsys.readouterr().err
    assert exit_.value.code == 2 and refusal in said and len(said.strip().splitlines()) == 1


def replace_by_link(path: Path) -> None:
    """The part moved out of the run and a symlink left in its place (a space-saving habit)."""
    moved = path.parent.parent / f"moved-{path.parent.name}-{path.name}"
    path.rename(moved)
    path.symlink_to(moved)


def test_only_the_shards_the_index_names_are_weights(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path / "run")
    model = run / "full" / "model"
    (model / "model.safetensors").rename(model / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {"shared.weight": "model-00001-of-00001.safetensors"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    (model / "model-00002-of-00002.safetensors").write_bytes(b"a stray shard of another save")
    files = run_files(run)
    assert "full/model/model-00001-of-00001.safetensors" in files
    assert "full/model/model-00002-of-00002.safetensors" not in files
    from contract.files import publishing_problems

    assert publishing_problems(run) == []
    (model / "model-00001-of-00001.safetensors").unlink()
    assert publishing_problems(run) == ["full/model/model-00001-of-00001.safetensors is missing"]

