"""P12: a newcomer's first start. From `python app.py` on a fresh copy (no artifacts/) to (1) a page that answers
and (2) the first summary served by the tiny demo's models, which the app builds first.

    python p12_first_start.py                           # this code (about 3 minutes on 2 CPU cores)
    python p12_first_start.py --baseline_ref beba8e0    # and, right after, the same for an earlier commit: a ratio
    python p12_first_start.py --smoke                   # mechanics only: a build of a few steps

Each side runs alone, one after the other, in its own fresh copy (the baseline's from `git archive <ref>`).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, base_arguments, fresh_copy, record, wait_for_app

PORT = 7872
DIALOGUE = "#Person1#: Could you send me the report by Friday?\n#Person2#: Sure, I'll finish it on Thursday."
SMOKE_TRAINING = ["--max_steps", "2", "--tiny_pretrain_steps", "2", "--eval_limit", "2", "--max_train_samples", "16",
                  "--max_eval_samples", "8"]


def first_start(project: Path, training: list[str]) -> dict:
    """Seconds from `python app.py` to the first answer of any page, to the app, and to a first summary."""
    from gradio_client import Client

    command = [sys.executable, "app.py", "--port", str(PORT), *(["--preset", "tiny", *training] if training else [])]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=project, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        times = wait_for_app(proc, PORT, 3600, start)
        Client(f"http://127.0.0.1:{PORT}/", verbose=False).predict(DIALOGUE, api_name="/summarize_all")
        times["summary"] = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return times


def archived(ref: str, target: Path) -> Path:
    """The project at `ref`, as a fresh clone of that commit has it."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--baseline_ref", help="a git commit to measure the same way after this code (a ratio)")
    args = parser.parse_args()
    training = SMOKE_TRAINING if args.smoke else []
    with tempfile.TemporaryDirectory() as tmp:
        ours = first_start(fresh_copy(Path(tmp) / "ours"), training)
        before = first_start(archived(args.baseline_ref, Path(tmp) / "before"), training) if args.baseline_ref \
            else None
    print(f"P12: page {ours['page']:.1f} s, app {ours['app']:.1f} s, first summary {ours['summary']:.1f} s"
          + (f"; {args.baseline_ref}: page {before['page']:.1f} s, first summary {before['summary']:.1f} s"
             if before else ""), flush=True)
    common = dict(results=args.results, app_command="python app.py" + (" --preset tiny " + " ".join(training)
                                                                         if training else ""))
    record("P12-page", ours["page"], 10.0, "seconds from `python app.py` (fresh copy, no run yet) to a page that "
           "answers; baseline = the 10-second goal", "<= 10 s", **common)
    baseline = f"commit {args.baseline_ref}, measured right after" if before else "the 150-second goal"
    record("P12", ours["summary"], before["summary"] if before else 150.0,
           "seconds from `python app.py` (fresh copy, no run yet) to the first /summarize_all answered by the "
           f"tiny demo's models; baseline = {baseline}",
           "<= 150 s on 2 CPU cores", app_seconds=ours["app"], baseline_ref=args.baseline_ref,
           baseline_times=before, **common)


if __name__ == "__main__":
    main()
