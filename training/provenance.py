"""Where and with what a result was made: time, package versions, commit (and uncommitted changes), device and
peak memory. Shared by the
training recipe and the evaluation, so both record the same facts the same way."""

import datetime as dt
import resource
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import torch


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict:
    import datasets
    import peft
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "datasets": datasets.__version__, "rouge_score": version("rouge-score")}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def tree_dirty() -> bool | None:
    """Whether the project's tracked files differ from the commit (None: not a git checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def source() -> dict:
    """The code a result was made with: the commit, and whether tracked files had uncommitted changes."""
    return {"commit": git_commit(), "dirty": tree_dirty()}


def peak_memory() -> tuple[int, str]:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_peak_rss"  # Linux: KiB


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
