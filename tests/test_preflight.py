"""Every bad input of the fourth reliability round: one line, exit 2, before any work, no run folder left behind."""

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
    "storage garbage": (["--sweep", "lr", "--sweep_storage", "garbage"], "--sweep_storage 'garbage' cannot be opened"),
    "storage unwritable": (["--sweep", "lr", "--sweep_storage", "sqlite:////proc/no/such/dir/s.db"], "cannot be opened"),
    "storage unsupported": (["--sweep", "lr", "--sweep_storage", "nosuchdb://host/db"], "cannot be opened"),
    "sweep rate": (["--sweep", "lr", "--sweep_lr", "x1", "fast"], "--sweep_lr 'fast'"),
    "sweep rate zero": (["--sweep", "lr", "--sweep_lr", "0"], "a rate must be > 0"),
    "sweep floor": (["--sweep", "lr", "--sweep_floor", "high"], "--sweep_floor 'high'"),
    "seed range": (["--seed", "4294967295", "--seeds", "2"], "seeds must lie in 0..4294967295"),
    "negative seed": (["--seed", "-1"], "seeds must lie in"),
    "r zero": ({"r": 0}, "peft cannot build it"),
    "r negative": ({"r": -3}, "peft cannot build it"),
    "r text": ({"r": "abc"}, "peft cannot build it"),
    "r huge": ({"r": 1_000_000_000}, "more than the whole base model"),
    "no such module": ({"target_modules": ["zzz"]}, "zzz"),
    "misspelled key": ({"lora_alhpa": 16}, "LORA has no field 'lora_alhpa'"),
    "long name": ("x" * 256, "must be 1 to 100 letters"),
    "case twin of a built-in": ("Full", "differs from 'full' only in case"),
    "case twin of a built-in 2": ("LORA", "differs from 'lora' only in case"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(case, tmp_path, capsys):
    given, expected = CASES[case]
    run_dir = tmp_path / "run"
    argv = [*BASE, "--output_dir", str(run_dir)]
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


def test_a_good_user_config_still_passes_the_checks(tmp_path):
    from training.config import TrainConfig
    from training.methods import resolve_methods
    from training.preflight import check_run

    cfg = TrainConfig(preset="tiny", methods="full,lora,dora,ia3,prompt_tuning,prefix_tuning,loha,vera,mine",
                      method_config=[f"mine={user_config(tmp_path, r=8)}"], sweep="lr", seed=7, seeds=3)
    check_run(cfg, resolve_methods(cfg.methods, cfg.method_config, cuda=False))
