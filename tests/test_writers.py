"""Reliability, third round (training side): one writer per run folder, evaluation complete or absent, a full disk
named as such, and user configs that mean what they say (repeated flags, names, training-loop needs, size)."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from contract.files import EVAL, EVAL_PREDICTIONS, read_evaluation
from tests.helpers import ROOT, tiny_config
from training import evaluate, finetune
from training.config import ConfigError, parse_config
from training.methods import resolve_methods, user_method
from training.run_folder import LOCK, DiskFull, one_writer

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = ["--preset", "tiny", "--tiny_pretrain_steps", "0", "--max_train_samples", "16", "--max_eval_samples", "4",
         "--max_steps", "3", "--eval_steps", "3"]
HOLD = ("import sys, time; from pathlib import Path; from training.run_folder import one_writer; "
        "cm = one_writer(Path(sys.argv[1])); cm.__enter__(); print('held', flush=True); time.sleep(120)")


def holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_a_second_command_on_a_held_run_folder_stops_and_names_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    proc = holder(run_dir)
    try:
        out = subprocess.run([sys.executable, "-m", "training.finetune", "--method", "lora", "--output_dir",
                              str(run_dir), *SMALL], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"being written by pid {proc.pid}" in out.stderr and "since" in out.stderr
        assert not (run_dir / "lora").exists()
    finally:
        proc.send_signal(signal.SIGKILL)  # a killed holder: its lock goes with it
        proc.wait()
    with one_writer(run_dir):  # the stale lock file is taken over
        assert f"pid {os.getpid()}" in (run_dir / LOCK).read_text()
    with one_writer(run_dir), one_writer(run_dir):  # re-entrant: the pipeline holds it while calling the recipe
        pass


@pytest.mark.slow
def test_two_trainings_on_one_run_folder_one_wins_the_other_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.finetune", "--method", "lora", "--output_dir", str(run_dir), *SMALL]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "being written by pid" in loser or "already exists" in loser  # refused either way, never overwritten


@pytest.fixture
def evaluated_copy(evaluated_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    return run


def test_a_failed_evaluation_leaves_the_previous_one_whole(evaluated_copy, monkeypatch):
    before = {p.name: p.read_bytes() for p in (evaluated_copy / EVAL).iterdir()}
    original = evaluate.write_predictions

    def write_then_fill_the_disk(path, *args):
        original(path, *args)
        path.write_text(path.read_text()[:100])  # cut short, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(evaluate, "write_predictions", write_then_fill_the_disk)
    with pytest.raises(DiskFull, match="the disk is full.*--resume"):
        evaluate.run(evaluate.EvalConfig(run=str(evaluated_copy), limit=2, max_new_tokens=4))
    assert {p.name: p.read_bytes() for p in (evaluated_copy / EVAL).iterdir()} == before
    metrics, rows = read_evaluation(evaluated_copy)
    assert len(rows) == metrics["n_dialogues"]


def test_an_evaluation_whose_files_disagree_is_redone_and_the_app_still_serves(evaluated_copy, capsys):
    import app
    from dashboard import run_data as rd
    from training.__main__ import evaluation_is_current

    assert evaluation_is_current(evaluated_copy)
    (evaluated_copy / EVAL_PREDICTIONS).write_text("")  # what a kill between the two writes used to leave
    assert not evaluation_is_current(evaluated_copy)
    assert "holds 0 dialogues" in capsys.readouterr().out
    data = rd.load_run(evaluated_copy)
    assert data.evaluation is None and any("holds 0 dialogues" in p for p in data.problems)
    app.create_app(evaluated_copy, evaluated_copy / "votes.sqlite")  # builds the page; models serve


def test_disk_full_while_saving_is_one_line_then_resume_continues(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    original = finetune.save_folder_atomically
    message = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left" })'

    def full(folder, save):
        raise RuntimeError(message)  # what safetensors raises, the errno only in its text

    monkeypatch.setattr(finetune, "save_folder_atomically", full)
    args = ["--method", "lora", "--output_dir", str(run_dir), *SMALL, "--save_steps", "1"]
    with pytest.raises(SystemExit) as exit_code:
        finetune.main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # above it: only the progress bars
    assert exit_code.value.code == 2 and "Traceback" not in err and last.startswith("error: the disk is full")
    assert str(run_dir) in last and "--resume" in last and "MiB free" in last
    monkeypatch.setattr(finetune, "save_folder_atomically", original)
    finetune.main([*args, "--resume"])
    assert (run_dir / "lora" / "metrics.json").exists()


def test_repeated_method_config_flags_gather_and_other_repeats_are_refused():
    cfg = parse_config(["--method_config", "a=x.json", "--preset", "tiny", "--method_config", "b=y.json", "c=z.json"])
    assert cfg.method_config == ["a=x.json", "b=y.json", "c=z.json"] and cfg.preset == "tiny"
    with pytest.raises(ConfigError, match="--learning_rate is given twice"):
        parse_config(["--learning_rate", "1e-3", "--learning_rate", "1e-4"])


def test_user_method_names_must_be_new_and_distinct(user_config):
    with pytest.raises(ConfigError, match="'lora' is a built-in method.*lora_mine"):
        resolve_methods("full", [f"lora={user_config}"])
    with pytest.raises(ConfigError, match="'mine' is given 2 times"):
        resolve_methods("full", [f"mine={user_config}", f"mine={user_config}"])


def write_config(tmp_path, name, doc):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"task_type": "SEQ_2_SEQ_LM", **doc}))
    return path


@pytest.mark.parametrize("peft_type", ["POLY", "MULTITASK_PROMPT_TUNING"])
def test_methods_that_need_task_ids_are_refused_before_training(tmp_path, peft_type):
    path = write_config(tmp_path, "p", {"peft_type": peft_type})
    with pytest.raises(ConfigError, match="task id"):
        user_method(f"mine={path}")


def test_an_adapter_larger_than_its_base_is_refused_unless_intended(tmp_path):
    path = write_config(tmp_path, "huge", {"peft_type": "LORA", "r": 5000, "target_modules": ["q", "v"]})
    cfg = tiny_config(tmp_path / "run", max_steps=1)
    with pytest.raises(ConfigError, match="more than the whole base model.*--allow_large_adapter"):
        finetune.run(cfg, user_method(f"huge={path}"))
    assert not (tmp_path / "run" / "huge" / "adapter").exists()


def test_adalora_prunes_its_ranks_to_the_budget(tmp_path):
    from safetensors.torch import load_file

    path = write_config(tmp_path, "ada", {"peft_type": "ADALORA", "init_r": 8, "target_r": 2, "lora_alpha": 8,
                                          "target_modules": ["q", "v"], "tfinal": 2})
    run_dir = tmp_path / "run"
    finetune.run(tiny_config(run_dir, max_steps=12, eval_steps=6), user_method(f"ada={path}"))
    saved = json.loads((run_dir / "ada" / "adapter" / "adapter_config.json").read_text())
    assert saved["total_step"] == 12  # derived from the run, not typed
    modules = len(saved["rank_pattern"])
    weights = load_file(run_dir / "ada" / "adapter" / "adapter_model.safetensors")
    kept = sum(int((w != 0).sum()) for k, w in weights.items() if "lora_E" in k)
    assert modules == 12 and kept == 2 * modules  # from 8 ranks each to the budget: 2 per module on average
    assert len({sum(v) for v in saved["rank_pattern"].values()}) > 1  # allocated unevenly, by importance


@pytest.mark.parametrize("module_name", ["training.finetune", "training.__main__"])
def test_the_commands_in_each_docstring_parse_and_name_their_methods(module_name, user_config):
    import importlib

    module = importlib.import_module(module_name)
    commands = [
        re.sub(r"\S+/adapter_config\.json", str(user_config), line.split("#")[0]).split()
        for line in module.__doc__.splitlines()
        if re.match(r"\s+(python|torchrun|accelerate)\b.*-m training", line)
    ]
    assert commands
    for words in commands:
        args = words[words.index("-m") + 2:]
        cfg = parse_config(args)
        if module_name == "training.finetune":
            assert finetune.single_method(cfg).name
        else:
            assert resolve_methods(cfg.methods, cfg.method_config, cuda=False)
