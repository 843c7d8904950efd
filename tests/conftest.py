"""Shared fixtures: one tiny full + LoRA run (a few steps on one repeated batch) reused by many tests. Helpers that
are not fixtures live in tests/helpers.py."""

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each (subprocesses inherit it)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from tests.helpers import CaptureModel, tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run folder, {'full': trained model, 'lora': trained peft model}); 16 examples = one batch, 10 steps."""
    from training import finetune
    from training.methods import BUILTIN

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    models = {}
    # 40 copy pre-training steps: the base writes text (a random one writes only padding), so outputs compare
    finetune.run(
        tiny_config(run_dir, tiny_pretrain_steps=40), BUILTIN["full"], callbacks=[CaptureModel(models, "full")]
    )
    finetune.run(tiny_config(run_dir), BUILTIN["lora"], callbacks=[CaptureModel(models, "lora")])
    return run_dir, models


@pytest.fixture(scope="session")
def evaluated_run(tiny_run):
    """The tiny run with eval/ (8 test dialogues, 16 new tokens)."""
    from contract.files import EVAL_METRICS
    from training import evaluate

    run_dir, _ = tiny_run
    if not (run_dir / EVAL_METRICS).exists():
        evaluate.run(evaluate.EvalConfig(run=str(run_dir), limit=8, batch_size=4, max_new_tokens=16))
    return run_dir


@pytest.fixture(scope="session")
def user_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": 4, "lora_alpha": 8,
                                "target_modules": ["q", "k"], "lora_dropout": 0.0}))
    return path


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A run that `build(folder)` makes, built once for the whole session even under xdist (each of its workers is
    a process with its own session fixtures): the first worker to ask builds it in the session's shared folder,
    holding a lock the others wait on; each worker then gets a copy of its own, since tests write into runs."""
    mine = tmp_path_factory.mktemp("runs") / name
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        build(mine)
        return mine
    shared = tmp_path_factory.getbasetemp().parent / f"built-{name}"
    with open(f"{shared}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "complete").exists():
            shutil.rmtree(shared, ignore_errors=True)  # a build that failed half-way
            build(shared / "run")
            (shared / "complete").touch()
    shutil.copytree(shared / "run", mine)
    return mine


@pytest.fixture(scope="session")
def methods_run(tmp_path_factory, user_config):
    """`python -m training --methods all --method_config lora_r4_qk=...` for 8 steps each, 4 test dialogues."""
    from training.__main__ import main

    return built_once(tmp_path_factory, "all", lambda run_dir: main([
        "--preset", "tiny", "--output_dir", str(run_dir), "--methods", "all", "--method_config",
        f"lora_r4_qk={user_config}", "--max_train_samples", "16", "--max_eval_samples", "8", "--max_steps", "8",
        "--logging_steps", "1", "--eval_steps", "4", "--tiny_pretrain_steps", "40", "--eval_limit", "4",
        "--serving_dialogues", "2"]))


@pytest.fixture(scope="session")
def catalogue_run(tmp_path_factory):
    """Every built-in beyond the core ones (training/methods.py CATALOGUE), 4 steps each, 2 test dialogues."""
    from training.__main__ import main
    from training.methods import BUILTIN, CORE

    catalogue = ",".join(m for m in BUILTIN if m not in CORE)
    return built_once(tmp_path_factory, "catalogue", lambda run_dir: main([
        "--preset", "tiny", "--output_dir", str(run_dir), "--methods", catalogue, "--max_train_samples", "16",
        "--max_eval_samples", "8", "--max_steps", "4", "--logging_steps", "1", "--eval_steps", "4",
        "--tiny_pretrain_steps", "40", "--eval_limit", "2", "--serving_dialogues", "0"]))
