"""Shared set-up of the CPU benchmarks: the model, tokenizer and dialogues, and the results file.

flan-t5-small's architecture with random weights and its own lm_head (as the real checkpoint): speed and memory
do not depend on the values. With ../shared: the real FLAN-T5 tokenizer and DialogSum test dialogues; without it
(or with --smoke): the bundled sample and the tiny preset's tokenizer and architecture, said in the output.
"""

import datetime as dt
import json
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results.jsonl"


@dataclass
class Setup:
    tokenizer: object
    dialogues: list[str]
    summaries: list[str]   # each dialogue's first reference
    config: object
    source: str


def load_setup(n: int, smoke: bool = False) -> Setup:
    from transformers import AutoConfig, AutoTokenizer, T5Config

    from training.config import TINY_T5
    from training.data import group_references, load_data
    from training.modeling import train_sample_tokenizer

    if not smoke and (SHARED / "models" / "flan-t5-small-config").is_dir():
        tok = AutoTokenizer.from_pretrained(SHARED / "models" / "flan-t5-tokenizer")
        frame = group_references(load_data(str(SHARED / "data" / "dialogsum")).splits["test"])
        config = AutoConfig.from_pretrained(SHARED / "models" / "flan-t5-small-config")
        source = "flan-t5-small architecture, FLAN-T5 tokenizer, DialogSum test dialogues (../shared)"
    else:
        data = load_data("sample")
        tok = train_sample_tokenizer([t for s in data.splits.values() for t in s["dialogue"]])
        frame = group_references(data.splits["test"])
        config = T5Config(vocab_size=len(tok), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **TINY_T5)
        source = "tiny architecture, sample tokenizer, bundled sample dialogues (no ../shared or --smoke)"
    return Setup(tok, list(frame["dialogue"][:n]), [r[0] for r in frame["references"][:n]], config, source)


def random_model(config, seed: int = 0):
    from transformers import AutoModelForSeq2SeqLM

    from training.modeling import untie_lm_head

    torch.manual_seed(seed)
    return untie_lm_head(AutoModelForSeq2SeqLM.from_config(config)).eval()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def record(benchmark: str, ours: float, baseline: float, unit: str, goal: str, results: Path = RESULTS, **extra):
    """Print the pair and their ratio, and append one JSON object to the results file."""
    row = {"benchmark": benchmark, "ours": ours, "baseline": baseline, "ratio": ours / baseline, "unit": unit,
           "goal": goal, "device": device(), "date": dt.date.today().isoformat(),
           "command": " ".join(["python", *sys.argv]), **extra}
    print(f"{benchmark}: ours {ours:.4g} {unit}, baseline {baseline:.4g} {unit}, ratio {row['ratio']:.3f} "
          f"(goal {goal})", flush=True)
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def base_arguments(description: str):
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the benchmark runs (no timing value)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSONL file the figures are appended to")
    return parser


def wait_for_app(proc, port: int, timeout: float, start: float) -> dict:
    """Poll http://127.0.0.1:<port>/config until the app itself answers (not the page a first start shows while
    it builds the demo): {"page": seconds until anything answered, "app": seconds until the app did}, from
    `start` (time.perf_counter())."""
    import urllib.request

    from dashboard.page import TITLE

    seen = {}
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"app.py stopped (exit {proc.returncode}) before serving")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                title = json.loads(r.read()).get("title")
            seen.setdefault("page", time.perf_counter() - start)
            if title == TITLE:
                seen["app"] = time.perf_counter() - start
                return seen
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"app.py did not serve within {timeout:.0f} s")


def fresh_copy(target: Path) -> Path:
    """The project as a fresh clone has it: no artifacts, no caches."""
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns("artifacts", ".git", "__pycache__", "*.pyc"))
    return target
