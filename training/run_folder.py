"""The run folder a recipe writes into: refusing or resuming existing work, the run-wide files written once
(run.json, the tiny base), and marking a method complete."""

import errno
import fcntl
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from contract.files import METHOD_METRICS, RUN_JSON, method_metrics, read_run_file, write_run_file
from training.config import TrainConfig
from training.data import LoadedData, load_data
from training.modeling import TINY_BASE_DIR, build_tiny_base
from training.provenance import git_commit, package_versions, tree_dirty, utc_now

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
        return out, newest_complete_checkpoint(out / CHECKPOINTS)  # the served model's; its sweep's legs have theirs
    if out.exists():
        if not cfg.overwrite:
            raise RunFolderError(f"{out} already exists. Pass --resume to continue it (from its newest complete "
                                 "checkpoint, or from step 0 if it has none), --overwrite to replace it, or "
                                 "--output_dir for a new run folder.")
        wipe(out)
    return out, None


def checkpoint_step(checkpoint: Optional[str]) -> int:
    """The step a checkpoint-N folder was saved at; 0 for none."""
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0


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


def set_up_run(cfg: TrainConfig, args) -> LoadedData:
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
        "versions": package_versions(), "git_commit": git_commit(),
        "git_dirty": tree_dirty()})


def finish(out: Path, metrics: dict) -> None:
    """metrics.json last: a method (or seed) folder with metrics.json is complete. Then the checkpoints go."""
    write_run_file(out.parent, method_metrics(out.name), metrics)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)


DISK_FULL_SIGNS = ("No space left on device", "os error 28", "StorageFull", "code: 28")


def disk_full(error: BaseException) -> bool:
    """ENOSPC anywhere in the exception chain, or in the text of a wrapper that keeps only the message."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(sign in str(error) for sign in DISK_FULL_SIGNS):
            return True
        error = error.__cause__ or error.__context__
    return False


class DiskFull(RunFolderError):
    """ENOSPC while a command wrote its run folder; the message says where and that --resume continues."""


def disk_full_message(error: BaseException, where: Path) -> str:
    filename = next((e.filename for e in (error, error.__cause__, error.__context__)
                     if isinstance(e, OSError) and e.filename), None)
    folder = Path(filename).parent if filename else where
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    return (f"the disk is full: writing {filename or 'under ' + str(where)} failed (no space left on device; "
            f"{free / 2**20:,.0f} MiB free on that disk now). Complete methods, checkpoints and evaluations already "
            "written are kept: free some space and run the same command with --resume to continue.")


LOCK = ".lock"      # <run>/.lock: held (flock) by the one command writing the run; says who in its text
_held: dict = {}    # run folder -> open lock file of this process (re-entrant: the pipeline calls the recipe)


QUEUED_RUN = "DIALOGSUM_QUEUED_RUN"  # set by a queue's worker for the processes it starts (a torchrun job)


def trusted_to_the_queue(run_dir: Path) -> dict:
    """This process is a worker of the run's job queue (training/jobs.py), which gives each job to one worker:
    one_writer lets it write without taking the run's lock (its coordinator holds that). Returns the environment
    that extends this trust to the processes it starts for a job."""
    _held[Path(run_dir).resolve()] = None
    return {QUEUED_RUN: str(Path(run_dir).resolve())}


@contextmanager
def one_writer(run_dir: Path):
    """Hold the run folder for the whole command: a second command on it stops at once, naming the holder (pid,
    command, since when). The lock is the OS's (flock): a killed holder releases it with its last breath, so a
    stale lock file is simply taken over. Under torchrun only rank 0 holds it (the ranks are one command)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held or not is_main_process() or os.environ.get(QUEUED_RUN) == str(run_dir):
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process (it did not say which)"
        handle.close()
        raise RunFolderError(f"{run_dir} is being written by {holder}. One command writes a run folder at a time: "
                             "wait for it to finish (then --resume or evaluate), or give another --output_dir.")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} (`{' '.join(sys.argv)}`) since {utc_now()}\n")
    handle.flush()
    _held[run_dir] = handle
    try:
        yield
    except Exception as e:  # a full disk is named as such, however deep the writer that hit it
        if disk_full(e) and not isinstance(e, DiskFull):
            raise DiskFull(disk_full_message(e, run_dir)) from e
        raise
    finally:
        del _held[run_dir]
        handle.close()  # releases the lock; the file stays (its text is the last holder's)
