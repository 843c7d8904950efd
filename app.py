"""Gradio entry point (also the Hugging Face Spaces app_file).

    python app.py                          # newest complete run under artifacts/, or builds the tiny demo first
    python app.py --run artifacts/flan-t5-base --port 8080
    ARTIFACTS_DIR=artifacts/flan-t5-base python app.py

Importing this module starts nothing.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from dashboard.handlers import AppState
from dashboard.page import build_demo
from dashboard.run_data import load_run, newest_complete_run
from dashboard.serving import load_models
from dashboard.votes import VOTE_LIMIT_PER_HOUR, VoteStore

ROOT = Path(__file__).resolve().parent
DEMO_RUN = ROOT / "artifacts" / "tiny"
DEMO_NOTICE = ("This page shows the **tiny offline demo model** (a 0.9 M-parameter T5 trained in minutes on a "
               "bundled synthetic sample), not FLAN-T5. Train the real one with `python -m training --preset "
               "flan-t5-base` (GPU + internet) and start `python app.py --run artifacts/flan-t5-base`.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=os.environ.get("ARTIFACTS_DIR"),
                        help="run folder (artifacts/<run>); default: $ARTIFACTS_DIR, else the newest complete run")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--max_batch_rows", type=int, default=48,
                        help="rows (request x model) one generate call may batch across waiting requests")
    parser.add_argument("--max_wait_ms", type=float, default=50,
                        help="longest a request waits for others to share its generate calls")
    parser.add_argument("--votes_db", default=os.environ.get("VOTES_DB"),
                        help="SQLite file of the blind votes; default: $VOTES_DB, else <run>/votes.sqlite (on a "
                             "Hugging Face Space: VOTES_DB=/data/votes.sqlite, the persistent volume)")
    parser.add_argument("--vote_limit_per_hour", type=int,
                        default=int(os.environ.get("VOTE_LIMIT_PER_HOUR", VOTE_LIMIT_PER_HOUR)),
                        help="votes counted per client per hour; more are kept, flagged, and left out of the "
                             f"ratings; 0 = no limit (default: $VOTE_LIMIT_PER_HOUR, else {VOTE_LIMIT_PER_HOUR})")
    return parser.parse_args(argv)


def build_demo_run() -> Path:
    """Train the offline tiny demo through the real pipeline (a few minutes on 2 cores), progress on the console."""
    print("No trained run found under artifacts/: building the offline tiny demo (python -m training --preset tiny)."
          " This takes a few minutes once.", flush=True)
    subprocess.run([sys.executable, "-m", "training", "--preset", "tiny", "--output_dir", str(DEMO_RUN),
                    "--overwrite"], cwd=ROOT, check=True)
    return DEMO_RUN


def choose_run(run: str | None) -> Path:
    if run:
        if not (Path(run) / "run.json").exists():
            sys.exit(f"error: {run} is not a run folder (no run.json). Train one with `python -m training`.")
        return Path(run)
    return newest_complete_run(ROOT / "artifacts") or build_demo_run()


def create_app(run_dir: Path, votes_db: Path | None = None, max_rows: int = 48, max_wait_ms: float = 50,
               vote_limit_per_hour: int = VOTE_LIMIT_PER_HOUR):
    data = load_run(run_dir)
    notice = DEMO_NOTICE if data.run["preset"] == "tiny" else None
    votes = VoteStore(Path(votes_db) if votes_db else Path(run_dir) / "votes.sqlite", vote_limit_per_hour)
    models = load_models(run_dir, max_rows=max_rows, max_wait=max_wait_ms / 1000)
    return build_demo(AppState(data=data, models=models, demo_notice=notice, votes=votes))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.vote_limit_per_hour < 0:
        sys.exit(f"error: --vote_limit_per_hour must be 0 (no limit) or more, not {args.vote_limit_per_hour}.")
    demo = create_app(choose_run(args.run), args.votes_db, args.max_batch_rows, args.max_wait_ms,
                      args.vote_limit_per_hour)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)


if __name__ == "__main__":
    main()
