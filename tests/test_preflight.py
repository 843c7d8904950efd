"""Every bad input to training: one line, exit 2, before any work, no run folder left behind."""

import json
import time

import pytest

from training.__main__ import main as train

BASE = ["--preset", "tiny", "--max_train_samples", "16", "--max_eval_samples", "8", "--max_steps", "2",
        "--tiny_pretrain_steps", "0", "--eval_limit", "2"]


def user_config(tmp_path, name="adapter_config.json", **fields):
    path = tmp_path / name
    doc = {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]}
    path.write_text(json.dumps({**doc, **fields}))
    return path


CASES = {
    "retention file": (["--retention_data", "/no/texts.txt"], "--retention_data /no/texts.txt: no such file"),
    "devices without a queue": (["--devices_per_job", "2"], "--devices_per_job applies to a job queue"),
    "devices with a sweep": (["--workers", "1", "--devices_per_job", "2", "--sweep", "lr"], "--sweep trains its legs"),
    "devices zero": (["--workers", "1", "--devices_per_job", "0"], "--devices_per_job must be 1 or more (got 0)"),
    "dialogues per job": (["--workers", "1", "--dialogues_per_job", "0"], "--dialogues_per_job must be 1 or more"),
    "serving dialogues": (["--serving_dialogues", "-1"], "--serving_dialogues must be 0"),
    "energy country": (["--energy", "Mars"], "--energy 'Mars': not a country codecarbon knows"),
    "storage garbage": (["--sweep", "lr", "--sweep_storage", "garbage"], "--sweep_storage 'garbage' cannot be opened"),
    "storage unwritable": (
        ["--sweep", "lr", "--sweep_storage", "sqlite:////proc/no/such/dir/s.db"],
        "cannot be opened",
    ),
    "storage unsupported": (["--sweep", "lr", "--sweep_storage", "nosuchdb://host/db"], "cannot be opened"),
    "sweep rate": (["--sweep", "lr", "--sweep_lr", "x1", "fast"], "--sweep_lr 'fast'"),
    "sweep rate zero": (["--sweep", "lr", "--sweep_lr", "0"], "a rate must be > 0"),
    "sweep floor": (["--sweep", "lr", "--sweep_floor", "high"], "--sweep_floor 'high'"),
    "seed range": (["--seed", "4294967295", "--seeds", "2"], "seeds must lie in 0..4294967295"),
    "negative seed": (["--seed", "-1"], "seeds must lie in"),
    "rate infinite": (["--learning_rate", "inf"], "--learning_rate must be a finite number"),
    "rate not a number": (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
    "batch zero": (["--batch_size", "0"], "--batch_size must be 1 or more"),
    "eval batch zero": (["--eval_batch_size", "0"], "--eval_batch_size must be 1 or more"),
    "negative max steps": (["--max_steps", "-5"], "--max_steps must be > 0, or -1"),
    "accumulation zero": (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be 1 or more"),
    "logging steps zero": (["--logging_steps", "0"], "--logging_steps must be 1 or more"),
    "save steps zero": (["--save_steps", "0"], "--save_steps must be 1 or more"),
    "eval limit zero": (["--eval_limit", "0"], "--eval_limit must be 1 or more"),
    "train samples zero": (["--max_train_samples", "0"], "--max_train_samples must be 1 or more"),
    "warm-up infinite": (["--warmup_ratio", "inf"], "--warmup_ratio must be a finite number"),
    "weight decay negative": (["--weight_decay", "-1"], "--weight_decay must be >= 0"),
    "epochs infinite": (["--num_train_epochs", "inf"], "--num_train_epochs must be a finite number"),
    "target length zero": (["--max_target_length", "0"], "--max_target_length must be 1 or more"),
    "not a whole number": (["--max_steps", "abc"], "invalid int value"),
    "unknown option": (["--bogus_opt", "1"], "unknown option(s) --bogus_opt 1"),
    "unknown preset": (["--precision", "fp16"], "invalid choice"),
    "r zero": ({"r": 0}, "peft cannot build it"),
    "r negative": ({"r": -3}, "peft cannot build it"),
    "r text": ({"r": "abc"}, "peft cannot build it"),
    "r huge": ({"r": 1_000_000_000}, "more than the whole base model"),
    "no such module": ({"target_modules": ["zzz"]}, "zzz"),
    "misspelled key": ({"lora_alhpa": 16}, "LORA has no field 'lora_alhpa'"),
    "long name": ("x" * 256, "must be 1 to 100 letters"),
    "case twin of a built-in": ("Full", "differs from 'full' only in case"),
    "case twin of a built-in 2": ("LORA", "differs from 'lora' only in case"),
    "regex that does not compile": ({"target_modules": ".*(q|v"}, "target_modules '.*(q|v' is not a valid regular"),
    "prompt with another field": (["--prompt_template", "{dialogue} by {speaker}"], "not {speaker}"),
    "prompt with a lone brace": (["--prompt_template", "Summary {dialogue} {"], "not a format string"),
    "prompt without the dialogue": (["--prompt_template", "Summarize."], "must contain {dialogue}"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(case, tmp_path, capsys):
    given, expected = CASES[case]
    run_dir = tmp_path / "run"
    overridden = set(given) if isinstance(given, list) else set()
    base = [a for flag, value in zip(BASE[::2], BASE[1::2]) if flag not in overridden for a in (flag, value)]
    argv = [*base, "--output_dir", str(run_dir)]
    if isinstance(given, dict):  # a user config: full comes first and must not train before the refusal
        argv += ["--methods", "full,mine", "--method_config", f"mine={user_config(tmp_path, **given)}"]
    elif isinstance(given, str):  # a method name
        argv += ["--methods", "full", "--method_config", f"{given}={user_config(tmp_path)}"]
    else:
        argv += ["--methods", "full", *given]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        train(argv)
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not run_dir.exists()
    assert seconds < 30, f"{case}: refused after {seconds:.0f} s"  # found before any work (generous for CI)


@pytest.mark.parametrize("where,expected", [("a-file", "is an existing file"), ("/proc/none/run", "cannot create"),
                                            ("/sys/run", "cannot create")])
def test_an_output_dir_that_cannot_be_written_is_refused_before_any_work(where, expected, tmp_path, capsys):
    (tmp_path / "a-file").write_text("mine")
    target = where if where.startswith("/") else str(tmp_path / where)
    with pytest.raises(SystemExit) as exit_:
        train([*BASE, "--methods", "full", "--output_dir", target])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--output_dir" in err[0] and expected in err[0], err
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_good_user_config_still_passes_the_checks(tmp_path):
    from training.config import SweepSettings, TrainConfig
    from training.methods import resolve_methods
    from training.preflight import check_run

    cfg = TrainConfig(preset="tiny", methods="full,lora,dora,ia3,prompt_tuning,prefix_tuning,loha,vera,mine",
                      method_config=[f"mine={user_config(tmp_path, r=8)}"], sweep=SweepSettings(over="lr"), seed=7,
                      seeds=3)
    check_run(cfg, resolve_methods(cfg.methods, cfg.method_config, cuda=False))


def test_an_output_dir_inside_a_run_is_refused(evaluated_run, tmp_path, capsys):
    import shutil

    run = shutil.copytree(evaluated_run, tmp_path / "run", ignore=shutil.ignore_patterns("votes.sqlite*"))
    before = sorted(p.name for p in (run / "lora").iterdir())
    with pytest.raises(SystemExit) as exit_:
        train([*BASE, "--methods", "full", "--output_dir", str(run / "lora" / "again")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "lies inside the run folder" in err[0], err
    assert sorted(p.name for p in (run / "lora").iterdir()) == before


def test_a_corrupt_sweep_study_on_resume_is_one_line_that_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "sweep.sqlite3").write_bytes(b"not a database at all" * 200)
    with pytest.raises(SystemExit) as exit_:
        train([*BASE, "--methods", "full", "--output_dir", str(run), "--sweep", "lr", "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "move it aside" in err[0], err
    assert (run / "sweep.sqlite3").read_bytes() == b"not a database at all" * 200  # nothing of the user's moved


@pytest.mark.parametrize("variable", ["HF_HUB_ETAG_TIMEOUT=abc", "TRANSFORMERS_VERBOSITY=loud", "OMP_NUM_THREADS=x"])
def test_a_bad_variable_a_library_reads_at_import_is_one_line_before_it_is_imported(variable):
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    name, value = variable.split("=")
    for command in (["app.py", "--help"], ["-m", "training", "--help"], ["-m", "training.publish", "--help"]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env={**os.environ, name: value},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().startswith(f"error: ${name}="), done.stderr[-500:]
        assert len(done.stderr.strip().splitlines()) == 1



def test_every_training_option_is_in_one_help_group_and_help_shows_the_groups():
    import subprocess
    import sys

    from tests.helpers import ROOT
    from training.config import HELP_GROUPS, flag_of, option_fields

    grouped = [name for names in HELP_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(flag_of(f) for _, f in option_fields())  # each once, none left out
    shown = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120).stdout
    positions = [shown.index(f"\n{title}:\n") for title in HELP_GROUPS]
    assert positions == sorted(positions)  # in the order HELP_GROUPS gives
    assert shown.index("\n  --workers") > shown.index("\njob queue") > shown.index("\n  --energy")
