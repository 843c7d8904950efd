"""A first start: the page answers at once with the demo build's progress, turns into the app when the models are
served, says why in one line when the build fails, and the build never outlives the app."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.building import BuildProgress
from tests.helpers import ROOT, free_port

BUILD = ["--max_steps", "4", "--tiny_pretrain_steps", "2", "--eval_limit", "2", "--max_train_samples", "16",
         "--max_eval_samples", "8"]


def test_the_progress_follows_the_stages_bars_and_lines_of_the_build():
    progress = BuildProgress(command="python -m training --preset tiny")
    progress.feed("methods: full, lora\ntiny base: copy pre-training, 300 steps\n")
    assert progress.stage == "The tiny base model"
    bars = "  0%|          | 0/400 [00:00<?, ?it/s]\r 42%|████▏     | 168/400 [00:20<00:28,  8.2it/s]"
    progress.feed("training full\n" + bars)
    assert progress.stage == "Fine-tuning" and progress.detail == "full" and progress.step == (168, 400)
    assert "168 of 400" in progress.markdown() and "00:28" in progress.markdown()
    assert 'value="168" max="400"' in progress.bar_html()
    progress.feed("evaluating base and every method on the test dialogues\n")
    assert progress.stage.startswith("Evaluating") and progress.step is None
    assert progress.log().splitlines()[-1].startswith("evaluating")  # bars are not log lines
    progress.set("The build failed", failed="[boom](https://x.example) no space left")
    assert "The build failed" in progress.markdown() and "](" not in progress.markdown()


def test_the_build_page_never_shows_the_servers_paths_or_process_ids():
    progress = BuildProgress(command="python -m training --preset tiny")
    progress.feed("/srv/app/.venv/lib/python3.11/site-packages/peft/x.py:184: FutureWarning: deprecated\n"
                  "worker pid 48213 started\n")
    progress.set("The build failed", failed="--data /home/someone/project/data.jsonl: no such file")
    shown = progress.log() + progress.markdown()
    assert "/srv/app" not in shown and "/home/someone" not in shown and "48213" not in shown
    assert "x.py:184" in shown and "data.jsonl" in shown  # the file's own name stays: it says what is wrong


def fresh_project(tmp_path: Path) -> Path:
    """The project as a fresh clone has it (no artifacts/)."""
    return Path(shutil.copytree(ROOT, tmp_path / "project", ignore=shutil.ignore_patterns(
        "artifacts", ".git", "__pycache__", "*.pyc")))


def title_of(port: int):
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
            return json.loads(r.read()).get("title")
    except (OSError, ValueError):
        return None


def start_app(project: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FAILED_BUILD_SHOWN_SECONDS": "1"}
    return subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--preset", "tiny", *extra], cwd=project,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float, proc: subprocess.Popen):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.2)
    raise TimeoutError


@pytest.mark.slow
def test_the_page_answers_during_the_build_and_becomes_the_app(tmp_path):
    from dashboard.building import TITLE as BUILDING
    from dashboard.page import TITLE as APP

    project, port = fresh_project(tmp_path), free_port()
    proc = start_app(project, port, *BUILD)
    try:
        first = wait_for(lambda: title_of(port), 120, proc)
        assert first == BUILDING  # the build page, before any model exists
        assert not (project / "artifacts" / "tiny" / "eval").exists()
        wait_for(lambda: title_of(port) == APP, 600, proc)
        assert (project / "artifacts" / "tiny" / "eval" / "metrics.json").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_a_failed_build_is_one_line_and_stopping_the_app_stops_the_build(tmp_path):
    project, port = fresh_project(tmp_path), free_port()
    failing = start_app(project, port, *BUILD, "--data", str(tmp_path / "no-such-data.jsonl"))
    try:
        _, err = failing.communicate(timeout=300)
    finally:
        failing.kill()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert failing.returncode == 2 and len(errors) == 1 and "no-such-data" in errors[0], err[-2000:]

    slow_build = start_app(project, free_port(), "--tiny_pretrain_steps", "100000")  # long enough to stop it
    wait_for(lambda: children_of(slow_build.pid), 120, slow_build)
    child = children_of(slow_build.pid)[0]
    slow_build.send_signal(signal.SIGKILL)  # the harshest stop: the app gets no chance to clean up
    slow_build.wait(timeout=30)
    wait_for(lambda: not alive(child), 30, subprocess.Popen(["true"]))


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_run_still_training_is_served_again_as_its_methods_finish(evaluated_run, tmp_path):
    """`python app.py --run` of a run in progress serves what has finished, and serves it again on the same address
    as each method completes and when the evaluation lands; its pages reload themselves (RELOAD_JS on the title)."""
    from dashboard.page import TITLE as APP
    from tests.helpers import ROOT

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("lora", "eval", ".int8", "*.sqlite*"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--run", str(run), "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: title_of(port), 180, proc) == f"{APP} (1 method ready, training goes on)"
        shutil.copytree(evaluated_run / "lora", run / "lora")  # the queue finished LoRA
        wait_for(lambda: title_of(port) == f"{APP} (2 methods ready, training goes on)", 120, proc)
        shutil.copytree(evaluated_run / "eval", run / "eval")  # and the evaluation landed
        wait_for(lambda: title_of(port) == APP, 120, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
