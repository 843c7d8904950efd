"""A killed run resumes to the same result; bad data and bad requests get clear answers."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from contract.files import read_run_file, save_folder_atomically
from tests.helpers import LORA_METRICS, ROOT, StopAt, tiny_config
from training import finetune
from training.methods import BUILTIN
from training.run_folder import CHECKPOINT_DONE, CHECKPOINTS, AlreadyComplete, RunFolderError

RESUMABLE = dict(max_train_samples=40, max_eval_samples=8, batch_size=8, max_steps=15, save_steps=2, eval_steps=4,
                 logging_steps=1)  # 5 batches an epoch: checkpoints fall in the middle of epochs

FULL, LORA = BUILTIN["full"], BUILTIN["lora"]


def cli_args(cfg_kwargs: dict) -> list[str]:
    return [a for k, v in cfg_kwargs.items() for a in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted LoRA run (LoRA has dropout: its RNG state must be restored too)."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    finetune.run(tiny_config(run_dir, **RESUMABLE), LORA)
    return run_dir


def same_base(reference, run_dir):
    """The tiny base (tokenizer trained on the data) is built once per run folder; share it so runs compare."""
    run_dir.mkdir(parents=True)
    shutil.copytree(reference / "base", run_dir / "base")
    shutil.copy(reference / "run.json", run_dir / "run.json")


def start(run_dir, resume=False):
    cmd = [
        sys.executable,
        "-m",
        "training.finetune",
        "--method",
        "lora",
        "--preset",
        "tiny",
        "--output_dir",
        str(run_dir),
        "--tiny_pretrain_steps",
        "0",
        *cli_args(RESUMABLE),
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc, ready, timeout=240):
    """SIGKILL the process the moment ready() holds (polled every millisecond); False if it finished first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


def checkpoints(run_dir):
    folder = run_dir / "lora" / CHECKPOINTS
    return list(folder.glob("checkpoint-*")) if folder.exists() else []


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_result(reference_run, tmp_path):
    run_dir = tmp_path / "killed"
    same_base(reference_run, run_dir)
    # 1: the moment a checkpoint folder appears, i.e. in the middle of writing it
    assert kill_when(start(run_dir), lambda: any(not (c / CHECKPOINT_DONE).exists() for c in checkpoints(run_dir)))
    # 2: after resuming, right after a later checkpoint is complete
    first = {c.name for c in checkpoints(run_dir)}
    assert kill_when(start(run_dir, resume=True), lambda: any(
        (c / CHECKPOINT_DONE).exists() and c.name not in first for c in checkpoints(run_dir)))
    # 3: resume to the end
    out = start(run_dir, resume=True)
    log, _ = out.communicate(timeout=240)
    assert out.returncode == 0, log[-2000:]
    reference = load_file(reference_run / "lora" / "adapter" / "adapter_model.safetensors")
    resumed = load_file(run_dir / "lora" / "adapter" / "adapter_model.safetensors")
    assert all((reference[k] - resumed[k]).abs().max() == 0 for k in reference)  # bit-identical on CPU
    ref_metrics, metrics = read_run_file(reference_run, LORA_METRICS), read_run_file(run_dir, LORA_METRICS)
    assert metrics["loss_history"] == ref_metrics["loss_history"] and metrics["final"] == ref_metrics["final"]
    assert metrics["cost"]["segments"] >= 2 and not (run_dir / "lora" / CHECKPOINTS).exists()
    ratio = metrics["cost"]["examples_per_second"] / ref_metrics["cost"]["examples_per_second"]
    assert 0.3 < ratio < 3  # from the whole run's seconds, not the last segment's (which inflated it 2.4x)


def test_incomplete_checkpoints_are_skipped_with_a_message(reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    same_base(reference_run, run_dir)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(tiny_config(run_dir, **RESUMABLE), LORA, callbacks=[StopAt(5)])
    folder = run_dir / "lora" / CHECKPOINTS
    (folder / "checkpoint-6").mkdir()                       # killed right after creating the folder
    (folder / "checkpoint-8").mkdir()
    (folder / "checkpoint-8" / "adapter_model.safetensors").write_bytes(b"half")  # killed before its state
    finetune.run(tiny_config(run_dir, resume=True, **RESUMABLE), LORA)
    said = capsys.readouterr().out
    assert "skipping" in said and "checkpoint-8" in said and "checkpoint-6" in said and "checkpoint-4" in said
    reference = load_file(reference_run / "lora" / "adapter" / "adapter_model.safetensors")
    resumed = load_file(run_dir / "lora" / "adapter" / "adapter_model.safetensors")
    assert all((reference[k] - resumed[k]).abs().max() == 0 for k in reference)


def test_messages_never_send_the_user_in_a_circle(reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    same_base(reference_run, run_dir)
    (run_dir / "lora" / CHECKPOINTS).mkdir(parents=True)    # killed right after the folder was made
    with pytest.raises(RunFolderError, match="--resume to continue it"):
        finetune.run(tiny_config(run_dir, **RESUMABLE), LORA)
    finetune.run(tiny_config(run_dir, resume=True, **RESUMABLE), LORA)  # no checkpoint: starts over, says so
    assert "from step 0" in capsys.readouterr().out
    with pytest.raises(AlreadyComplete, match="nothing to resume"):
        finetune.run(tiny_config(run_dir, resume=True, **RESUMABLE), LORA)


def test_pipeline_resume_skips_finished_methods_and_continues_the_interrupted_one(reference_run, tmp_path, capsys):
    from training.__main__ import main

    run_dir = tmp_path / "run"
    same_base(reference_run, run_dir)
    small = dict(max_train_samples=16, max_eval_samples=8, max_steps=4, save_steps=2, eval_steps=2)
    finetune.run(tiny_config(run_dir, **small), FULL)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(tiny_config(run_dir, **small), LORA, callbacks=[StopAt(3)])
    args = ["--preset", "tiny", "--output_dir", str(run_dir), "--methods", "full,lora", "--tiny_pretrain_steps", "0",
            *cli_args(small), "--eval_limit", "2"]
    main(args + ["--resume"])
    said = capsys.readouterr().out
    assert "full is already complete; skipping it" in said and "continuing from" in said
    assert read_run_file(run_dir, LORA_METRICS)["final"]["steps"] == 4 and (run_dir / "eval" / "metrics.json").exists()
    main(args + ["--resume"])  # everything done: a no-op that says so
    assert "skipping the evaluation" in capsys.readouterr().out


def test_a_folder_saved_atomically_is_complete_or_absent(tmp_path):
    def crash(tmp):
        tmp.mkdir()
        (tmp / "config.json").write_text("")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_folder_atomically(tmp_path / "model", crash)
    assert not (tmp_path / "model").exists()
    save_folder_atomically(tmp_path / "model", lambda tmp: (tmp.mkdir(), (tmp / "config.json").write_text("{}")))
    assert (tmp_path / "model" / "config.json").read_text() == "{}" and not (tmp_path / ".model.tmp").exists()


# --- data errors: file, line/row, field; one line on the console, exit code 2 ---------------------------------

def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


DATA_CASES = {
    "one_row": ([{"dialogue": "A: hi", "summary": "A greets."}], "the train split is empty"),
    "summary_missing_after_row_1": ([{"dialogue": "A: hi", "summary": "x"}] + [{"dialogue": "B: yo"}] * 99,
                                    "row 2 has no 'summary' field"),
    "number_as_dialogue": ([{"dialogue": "A: hi", "summary": "x"}, {"dialogue": 42, "summary": "y"}],
                           "row 2, field 'dialogue' is a int"),
    "list_as_summary": ([{"dialogue": "A: hi", "summary": ["a", "b"]}], "row 1, field 'summary' is a list"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_clear_line_and_exit_code_2(tmp_path, case, capsys):
    from training.finetune import main as finetune_main

    rows, message = DATA_CASES[case]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(SystemExit) as exit_:  # the CLI in-process: run_cli's exit code and stderr are the same
        finetune_main(["--method", "full", "--preset", "tiny", "--data", str(path), "--output_dir",
                       str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "train.jsonl" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_invalid_utf8_names_file_and_line(tmp_path, suffix):
    from training.data import DataError, load_local

    good = '{"dialogue": "a", "summary": "b"}\n' if suffix == ".jsonl" else "dialogue,summary\na,b\n"
    (tmp_path / f"train{suffix}").write_bytes(good.encode() + good.splitlines()[-1].encode() + b"\xff\xfe\n")
    line = len(good.splitlines()) + 1
    with pytest.raises(DataError, match=rf"train\{suffix}: line {line} is not valid UTF-8"):
        load_local(tmp_path / f"train{suffix}")


# --- app inputs ------------------------------------------------------------------------------------------------

BAD_SETTINGS = [
    (dict(seed=None), "seed"), (dict(seed=2**63), "seed"), (dict(seed=-1), "seed"), (dict(seed=1.5), "whole"),
    (dict(temperature=float("nan")), "temperature"), (dict(temperature=float("inf")), "temperature"),
    (dict(top_p=0), "top-p"), (dict(max_new_tokens="abc"), "max new tokens"), (dict(max_new_tokens=10**9), "max new"),
    (dict(num_beams=0), "beams"), (dict(do_sample="yes please"), "sample"), (dict(do_sample=None), "sample"),
    (dict(max_new_tokens=True), "max new tokens"),
]


@pytest.mark.parametrize("bad,name", BAD_SETTINGS)
def test_each_invalid_setting_is_refused_by_name(bad, name):
    from dashboard.inputs import InputError, Settings

    with pytest.raises(InputError, match=name):
        Settings.from_inputs(**bad)


def test_boolean_strings_mean_what_they_say():
    from dashboard.inputs import Settings

    assert Settings.from_inputs(do_sample="false").do_sample is False
    assert Settings.from_inputs(do_sample="True").do_sample is True
    assert Settings.from_inputs(max_new_tokens="64", seed="7") == Settings(max_new_tokens=64, seed=7)


@pytest.mark.parametrize("text,reference,message", [
    ("#Person1#: hi", "x" * 1_000_000, "reference has 1,000,000 characters"),
    ("x" * 100_001, "", "dialogue has 100,001 characters"),
    ("#Person1#: hi \ud800 there", "", "cannot be encoded"),
    ("#Person1#: hi", "ref \udc00", "cannot be encoded"),
    (12345, "", "must be text"),
])
def test_oversized_or_unencodable_text_is_refused_before_any_model_call(evaluated_run, text, reference, message):
    import gradio as gr

    from dashboard import run_data as rd
    from dashboard.handlers import AppState, make_summarize_api
    from dashboard.serving import load_models

    models = load_models(evaluated_run)
    models.batcher = None  # any model call would fail
    with pytest.raises(gr.Error, match=message):
        make_summarize_api(AppState(data=rd.load_run(evaluated_run), models=models))(text, reference)
