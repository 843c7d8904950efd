"""Votes that outlive a Space's restart: the dataset mirror, tested as a restart (SIGTERM, the app's folder wiped,
started again) with the Hub stood in for at the huggingface_hub boundary by a local folder."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from dashboard import votes as vt
from scoring import preferences
from tests.helpers import ROOT, free_port

# STAND-INS for huggingface_hub's CommitScheduler and snapshot_download (no Hub here): the dataset is the folder
# $REMOTE; a commit copies the mirror's files there, a download returns it. Everything else is the real app.
SERVE = """
import concurrent.futures, os, shutil, sys, threading
from pathlib import Path
import huggingface_hub

REMOTE = Path(os.environ["REMOTE"])

class CommitScheduler:
    def __init__(self, *, repo_id, folder_path, repo_type=None, every=5, private=None, allow_patterns=None, **kw):
        assert repo_type == "dataset" and private is True and allow_patterns == ["*.jsonl"]
        self.folder, self.lock = Path(folder_path), threading.Lock()
    def trigger(self):
        with self.lock:
            REMOTE.mkdir(parents=True, exist_ok=True)
            for path in self.folder.glob("*.jsonl"):
                shutil.copyfile(path, REMOTE / path.name)
        done = concurrent.futures.Future()
        done.set_result(None)
        return done
    def stop(self):
        pass

def snapshot_download(repo_id, repo_type=None, allow_patterns=None, **kw):
    REMOTE.mkdir(parents=True, exist_ok=True)
    return str(REMOTE)

huggingface_hub.CommitScheduler = CommitScheduler
huggingface_hub.snapshot_download = snapshot_download
sys.argv = ["app.py", *sys.argv[1:]]
import app
app.main(sys.argv[1:])
"""


def start(run_dir, votes_db, remote, port):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REMOTE": str(remote), "VOTES_DATASET": "me/flan-t5-votes"}
    process = subprocess.Popen([sys.executable, "-c", SERVE, "--run", str(run_dir), "--port", str(port), "--votes_db",
                                str(votes_db)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            return process
        except OSError:
            assert process.poll() is None, process.stdout.read()[-3000:]
            time.sleep(1)
    raise AssertionError("the app did not start")


def stop(process):
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.slow
def test_every_acknowledged_vote_is_back_after_a_restart(evaluated_run, tmp_path):
    from gradio_client import Client

    app_folder, remote = tmp_path / "space", tmp_path / "dataset"
    app_folder.mkdir()  # the Space's disk (--votes_db's folder must exist)
    votes_db = app_folder / "votes.sqlite"
    port = free_port()
    process = start(evaluated_run, votes_db, remote, port)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    acknowledged = []
    for choice in ["a", "b", "tie", "a", "both_bad", "b"]:
        battle = client.predict("", api_name="/vote_battle")
        acknowledged.append(
            client.predict(battle["battle_id"], choice, api_name="/vote_cast") | {"id": battle["battle_id"]}
        )
    client.predict("#Person1#: a dialogue looked up by name", api_name="/summarize_all")
    stop(process)  # a restart: SIGTERM, then the disk is wiped
    before = vt.VoteStore(votes_db).votes_frame()
    assert len(before) == len(acknowledged) and list(remote.glob("*.jsonl"))
    shutil.rmtree(app_folder)
    app_folder.mkdir()  # wiped: an empty disk again

    process = start(evaluated_run, votes_db, remote, port)
    stop(process)
    after = vt.VoteStore(votes_db).votes_frame()
    pd.testing.assert_frame_equal(before, after)
    assert set(after["battle_id"]) == {a["id"] for a in acknowledged}
    models = sorted(set(after["model_a"]) | set(after["model_b"]))
    pd.testing.assert_frame_equal(
        preferences.ratings_table(preferences.counted(before), models),
        preferences.ratings_table(preferences.counted(after), models),
    )
    assert vt.VoteStore(votes_db).named_texts()  # who looked what up survives too: those battles still do not count


def test_a_bucket_mount_uses_one_connection_and_no_wal(tmp_path):
    import sqlite3

    (tmp_path / "bucket").mkdir()  # the mount point
    store = vt.VoteStore(tmp_path / "bucket" / "votes.sqlite", journal="delete")
    battle = store.add_battle("test", "#Person1#: hi", "t1", "full", "lora", "one", "two")
    store.cast(battle.id, "a", "c")
    assert not list((tmp_path / "bucket").glob("*-wal"))
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert store.shared is not None  # the one writer connection, kept open
