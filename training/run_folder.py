"""The run folder a recipe writes into: refusing or resuming existing work, the run-wide files written once
(run.json, the tiny base), and marking a method complete."""

import os
import shutil
from pathlib import Path
from typing import Optional

from contract.files import METHOD_METRICS, RUN_JSON, method_metrics, read_run_file, write_run_file
from training.config import TrainConfig
from training.data import LoadedData, load_data
from training.modeling import TINY_BASE_DIR, build_tiny_base
from training.provenance import git_commit, package_versions, utc_now

CHECKPOINTS = "checkpoints"  # Trainer checkpoints for --resume, removed once the method completes
CHECKPOINT_DONE = "checkpoint_done.json"  # written last into a checkpoint: without it the checkpoint is incomplete


class RunFolderError(RuntimeError):
    """The output folder is in a state the request cannot use (exists without --overwrite, nothing to resume)."""


class AlreadyComplete(RunFolderError):
    """--resume on a method whose metrics.json exists: nothing to do (the pipeline skips it)."""


def is_main_process() -> bool:
    """Before the Trainer exists (under torchrun every process runs this code): only rank 0 deletes or prints."""
    return int(os.environ.get("RANK", "0")) == 0


def wipe(out: Path) -> None:
    if out.exists() and is_main_process():
        shutil.rmtree(out, ignore_errors=True)


def check_output_folder(cfg: TrainConfig, name: str) -> tuple[Path, Optional[str]]:
    """(the method's folder, the checkpoint to resume from or None). Never sends the user in a circle:
    --resume continues from the newest COMPLETE checkpoint, or starts the method over when there is none;
    a plain run refuses an existing folder and says both ways on."""
    out = Path(cfg.output_dir) / name
    if cfg.resume:
        if (out / METHOD_METRICS).exists():
            raise AlreadyComplete(f"{out} is already complete ({out / METHOD_METRICS} exists): nothing to resume. "
                                  "Pass --overwrite to train it again.")
        checkpoint = newest_complete_checkpoint(out / CHECKPOINTS)
        if checkpoint is None:
            print(f"--resume: {out} has no complete checkpoint; training {name} from step 0.", flush=True)
            wipe(out)
        return out, checkpoint
    if out.exists():
        if not cfg.overwrite:
            raise RunFolderError(f"{out} already exists. Pass --resume to continue it (from its newest complete "
                                 "checkpoint, or from step 0 if it has none), --overwrite to replace it, or "
                                 "--output_dir for a new run folder.")
        wipe(out)
    return out, None


def newest_complete_checkpoint(folder: Path) -> Optional[str]:
    """The newest checkpoint-N that holds CHECKPOINT_DONE (written after everything else). Incomplete ones, left
    by a kill in the middle of a save, are named and deleted so the Trainer never sees them."""
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1, reverse=True)
    complete = None
    for checkpoint in found:
        if complete is None and (checkpoint / CHECKPOINT_DONE).exists():
            complete = checkpoint
        elif not (checkpoint / CHECKPOINT_DONE).exists() and is_main_process():
            print(f"--resume: skipping {checkpoint}: incomplete (no {CHECKPOINT_DONE}; the save was interrupted); "
                  "deleting it.", flush=True)
            shutil.rmtree(checkpoint, ignore_errors=True)
    if complete is not None:
        print(f"--resume: continuing from {complete}.", flush=True)
    return str(complete) if complete else None


def prepare_run(cfg: TrainConfig, args) -> LoadedData:
    """Load the data and, once per run (main process first), build the tiny base and write run.json."""
    data = load_data(cfg.data)
    if cfg.max_train_samples:
        data.splits["train"] = data.splits["train"].iloc[:cfg.max_train_samples]
    if cfg.max_eval_samples:
        data.splits["validation"] = data.splits["validation"].iloc[:cfg.max_eval_samples]
    run_dir = Path(cfg.output_dir)
    with args.main_process_first(desc="build the base model and run.json"):
        if args.process_index == 0:
            if cfg.base_model is None:
                texts = [t for s in data.splits.values() for t in (*s["dialogue"], *s["summary"])]
                build_tiny_base(cfg, run_dir, texts, list(data.splits["train"]["dialogue"]))
            write_or_check_run_json(cfg, run_dir)
    return data


def write_or_check_run_json(cfg: TrainConfig, run_dir: Path) -> None:
    base = cfg.base_model or TINY_BASE_DIR
    if (run_dir / RUN_JSON).exists():
        existing = read_run_file(run_dir, RUN_JSON)
        if existing["base_model"] != base or existing["data_source"] != cfg.data:
            raise RunFolderError(f"{run_dir / RUN_JSON} was written for base model {existing['base_model']!r} and "
                                 f"data {existing['data_source']!r}, not {base!r}/{cfg.data!r}. Use another "
                                 "--output_dir so the run's methods stay comparable.")
        return
    write_run_file(run_dir, RUN_JSON, {
        "schema_version": 1, "preset": cfg.preset, "base_model": base,
        "tokenizer": cfg.tokenizer or base, "data_source": cfg.data, "created_at": utc_now(),
        "versions": package_versions(), "git_commit": git_commit()})


def finish(name: str, out: Path, metrics: dict) -> None:
    """metrics.json last: a method folder with metrics.json is complete. Then the checkpoints go."""
    write_run_file(out.parent, method_metrics(name), metrics)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
