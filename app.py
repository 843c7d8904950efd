"""Gradio entry point (also the Hugging Face Spaces app_file).

    python app.py                          # newest complete run under artifacts/, or builds the tiny demo first
    python app.py --preset quick           # real flan-t5-small, trained first if artifacts/quick is not there yet
    python app.py --run artifacts/flan-t5-base --port 8080
    python app.py --run hf://you/flan-t5-dialogsum-methods     # a run published with python -m training.publish
    python app.py --run artifacts/quick --run artifacts/flan-t5-base   # several runs: Compare and the Leaderboard
    python app.py --runs artifacts                                     # every complete run under a folder
    ARTIFACTS_DIR=artifacts/flan-t5-base python app.py         # or RUN_REPO=hf://you/name (a Space's variable)
    RUN_REPO=hf://you/a,hf://you/b python app.py                # several, comma separated; RUNS_DIR=... for --runs

Options it does not know go to the training of --preset (e.g. --data ../shared/data/dialogsum).

Importing this module starts nothing.
"""

import argparse
import asyncio
import atexit
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn, Optional

from contract.protocol import QUICK_PRESET_TIME, on_zero_gpu  # first: contract checks the environment

if on_zero_gpu():  # ZeroGPU: `spaces` before torch touches CUDA
    import spaces  # noqa: F401

from contract.children import tied_to_parent
from contract.files import (
    EVAL_METRICS,
    EVAL_SERVING,
    RUN_JSON,
    VOTES_FILE,
    ArtifactError,
    is_finished,
    list_methods,
    without_paths,
)
from contract.hub import RUN_REPO_VARIABLE, is_hub_run, resolve_run
from dashboard.batcher import MAX_ROWS, MAX_WAIT_SECONDS
from dashboard.building import BuildProgress, build_page
from dashboard.fair_queue import DEFAULT_LIMIT as MAX_QUEUED_PER_CLIENT
from dashboard.handlers import FORWARDED_ALLOW_IPS, AppState, trust_forwarded_from
from dashboard.inputs import InputError
from dashboard.page import build_demo
from dashboard.run_data import complete_runs, load_run, newest_finished_run
from dashboard.runs import ModelSet, ServedRun, run_names
from dashboard.server_votes import ServerVoteStore, is_server_url
from dashboard.serving import BACKENDS, load_models
from dashboard.vote_mirror import PUSH_MINUTES, VoteMirror, read_back
from dashboard.votes import JOURNALS, VOTE_LIMIT_PER_HOUR, VotesPathError, VoteStore, check_votes_path

ROOT = Path(__file__).resolve().parent
MAX_BATCH_ROWS, MAX_WAIT_MS = MAX_ROWS, MAX_WAIT_SECONDS * 1000   # the batcher's defaults, as the options say them
MAX_ROWS_LIMIT, MAX_WAIT_LIMIT_MS = 4096, 10_000                   # beyond these a setting is a typo, not a choice
# a failed build's page stays up this long, so a person can read why (tests set it short)
FAILED_BUILD_SHOWN_SECONDS = float(os.environ.get("FAILED_BUILD_SHOWN_SECONDS", 60))
DEMO_NOTICE = ("This page shows the **tiny offline demo model** (a 0.9 M-parameter T5 trained in minutes on a "
               f"bundled synthetic sample), not FLAN-T5. **Real FLAN-T5 in {QUICK_PRESET_TIME}: "
               "`python app.py --preset quick`** (flan-t5-small on a DialogSum subset; internet once); the lab's "
               "model: `python -m training --preset flan-t5-base` (GPU), then `python app.py --run "
               "artifacts/flan-t5-base`.")


QUICK_NOTICE = ("This page shows the **quick preset**: FLAN-T5-small fine-tuned for one epoch on 256 DialogSum "
                "dialogues and scored on 200 test dialogues; real, but not the lab's flan-t5-base on the full data.")
NOTICES = {"tiny": DEMO_NOTICE, "quick": QUICK_NOTICE}
INCOMPLETE_NOTICE = ("**This run is incomplete:** it has no evaluation (the build was interrupted, or is still "
                     "running), so Metrics, Examples and test battles are empty. Finish it with `python -m training "
                     "--resume` and the options it was started with.")


FOLLOWING_NOTICE = ("**This run is still training:** the methods that have finished are served, and this page "
                    "reloads itself as more finish and once the evaluation lands (Metrics, Examples and test battles "
                    "need it).")


class OneLineParser(argparse.ArgumentParser):
    """argparse's refusals (an unknown choice, a missing value) as one line and exit 2, like every other refusal."""

    def error(self, message):
        refuse(f"{message} (python app.py --help lists every option)")


def refuse(message: str) -> NoReturn:
    """An input the app cannot work with: one line naming the option or variable, exit 2, before any model loads."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=None,
                        help="run folder (artifacts/<run>) or a published run, hf://<user>/<name>[@<revision>]; "
                             "give it again for more runs (the first one's Metrics, Examples and Vote are shown; "
                             f"Compare and the Leaderboard use all); default: ${RUN_REPO_VARIABLE}, else "
                             "$ARTIFACTS_DIR (comma separated for several), else the newest complete run")
    parser.add_argument("--runs", action="append", default=None,
                        help="a folder (or hf://<user>/<name>[/<folder>]) whose complete runs are all served, newest "
                             "first; default: $RUNS_DIR")
    parser.add_argument("--preset", choices=["tiny", "quick"], default=None,
                        help="serve artifacts/<preset>, training it first if it is not there (tiny: the offline "
                             "demo, minutes; quick: real flan-t5-small on a DialogSum subset, needs the Hub once)")
    parser.add_argument("--host", help="address to listen on; default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    parser.add_argument("--port", help="port to listen on (1-65535); default: $GRADIO_SERVER_PORT, else 7860")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (its visitors "
                        "arrive through a local tunnel: one voter identity for all of them unless "
                        "--forwarded_allow_ips 127.0.0.1 trusts the share server's forwarded address)")
    parser.add_argument("--forwarded_allow_ips",
                        help="proxies whose X-Forwarded-For names the visitor (addresses or networks, comma "
                             "separated), e.g. 127.0.0.1 behind your own nginx; default: "
                             f"${FORWARDED_ALLOW_IPS}, else none (the connecting address is the visitor). On a "
                             "Hugging Face Space the Space's proxy is trusted as it must be.")
    parser.add_argument("--backend",
                        help=f"{' or '.join(BACKENDS)}. exact: PyTorch, the models as trained (the default); int8: "
                             "the base, full fine-tunes and every adapter peft can merge served in int8 through "
                             "CTranslate2 on the CPU (converted once, cached in <run>/.int8), prompt/prefix tuning "
                             "exact; each summary says which wrote it. Default: $SERVING_BACKEND, else exact")
    parser.add_argument("--max_batch_rows", default=str(MAX_BATCH_ROWS),
                        help="rows (request x model) one generate call may batch across waiting requests "
                             f"(1-{MAX_ROWS_LIMIT}; default {MAX_BATCH_ROWS})")
    parser.add_argument("--max_wait_ms", default=str(MAX_WAIT_MS),
                        help="longest a request waits for others to share its generate calls "
                             f"(0-{MAX_WAIT_LIMIT_MS:g} ms; default {MAX_WAIT_MS:g})")
    parser.add_argument("--votes_db",
                        help="SQLite file of the blind votes (its folder must exist), or a server database's URL "
                             "(postgresql+psycopg://...: shared by several app replicas; needs $VOTE_SECRET); "
                             "default: $VOTES_DB, else "
                             f"<run>/{VOTES_FILE} (on a Hugging Face Space: a path on a mounted Storage Bucket, with "
                             "--votes_journal delete, and/or --votes_dataset)")
    parser.add_argument("--votes_journal",
                        help=f"{' or '.join(JOURNALS)}. wal: a local disk (the default); delete: the votes DB on a "
                             "Storage Bucket mounted as a volume (no WAL there, one writer connection); default: "
                             "$VOTES_JOURNAL, else wal")
    parser.add_argument("--votes_dataset",
                        help="a private Hub dataset <user>/<name> that mirrors every vote (committed every "
                             f"{PUSH_MINUTES:g} min and on SIGTERM) and is read back at start-up: votes outlive a "
                             "Space's restart; default: $VOTES_DATASET")
    parser.add_argument("--max_queued_per_client",
                        help="requests one client (address) may have waiting or running at once; more are refused "
                             "at once, so one client cannot fill the queue for everyone; 0 = no cap (default: "
                             f"$MAX_QUEUED_PER_CLIENT, else {MAX_QUEUED_PER_CLIENT})")
    parser.add_argument("--price_per_hour",
                        help="US$ per hour of the run's device, for the Metrics tab's costs (a person can change it "
                             "there); default: $PRICE_PER_HOUR, else the device's listed on-demand price")
    parser.add_argument("--cpu_price_per_hour",
                        help="US$ per CPU-hour, for int8 serving's cost; default: $CPU_PRICE_PER_HOUR, else the "
                             "smallest listed CPU's price")
    parser.add_argument("--vote_limit_per_hour",
                        help="votes counted per client per hour; more are kept, flagged, and left out of the "
                             f"ratings; 0 = no limit (default: $VOTE_LIMIT_PER_HOUR, else {VOTE_LIMIT_PER_HOUR})")
    args, training_args = parser.parse_known_args(argv)
    return checked_options(args, training_args), training_args


def whole_number(low: int, high: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"give a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"give a whole number from {low} to {high}")
        return value
    return convert


def number(low: float, high: float):
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"give a number from {low:g} to {high:g}")
        return value
    return convert


def one_of(choices: tuple):
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"use one of {', '.join(choices)}")
        return text
    return convert


def hub_id(text: str) -> str:
    if text.count("/") != 1 or not all(text.split("/")):
        raise ValueError("give a Hub dataset as <user>/<name>")
    return text


# option -> (environment variable it defaults to, converter, value when neither is given)
OPTIONS = {
    "host": ("GRADIO_SERVER_NAME", str, "127.0.0.1"),
    "port": ("GRADIO_SERVER_PORT", whole_number(1, 65535), 7860),
    "forwarded_allow_ips": (FORWARDED_ALLOW_IPS, str, None),
    "backend": ("SERVING_BACKEND", one_of(BACKENDS), "exact"),
    "max_batch_rows": (None, whole_number(1, MAX_ROWS_LIMIT), MAX_BATCH_ROWS),
    "max_wait_ms": (None, number(0, MAX_WAIT_LIMIT_MS), MAX_WAIT_MS),
    "votes_db": ("VOTES_DB", str, None),
    "votes_journal": ("VOTES_JOURNAL", one_of(JOURNALS), "wal"),
    "votes_dataset": ("VOTES_DATASET", hub_id, None),
    "vote_limit_per_hour": ("VOTE_LIMIT_PER_HOUR", whole_number(0, 10**6), VOTE_LIMIT_PER_HOUR),
    "max_queued_per_client": ("MAX_QUEUED_PER_CLIENT", whole_number(0, 10**4), MAX_QUEUED_PER_CLIENT),
    "price_per_hour": ("PRICE_PER_HOUR", number(0, 10**4), None),
    "cpu_price_per_hour": ("CPU_PRICE_PER_HOUR", number(0, 10**4), None),
}


def checked_options(args: argparse.Namespace, training_args: list[str]) -> argparse.Namespace:
    """Every option (else its environment variable) converted and range-checked, and the combinations that cannot
    work refused, before anything is loaded or trained; each refusal names the option or variable."""
    sources = {}
    for name, (variable, convert, fallback) in OPTIONS.items():
        given, source = getattr(args, name), f"--{name}"
        if given is None and variable and os.environ.get(variable):
            given, source = os.environ[variable], f"${variable}"
        sources[name] = source
        try:
            setattr(args, name, fallback if given is None else convert(given))
        except ValueError as e:
            refuse(f"{source} {str(given)[:60]!r}: {e}.")
    if training_args and not args.preset:
        refuse(f"unknown option(s) {' '.join(training_args)[:200]} (options for training go with --preset; "
               "python app.py --help lists the app's own).")
    if args.preset and (args.run or args.runs):
        refuse("--preset serves artifacts/<preset> (training it first); --run/--runs name runs: give one of them.")
    if args.backend == "int8" and on_zero_gpu():
        refuse("--backend int8 runs on the CPU (CTranslate2); a ZeroGPU Space serves on its GPU: use --backend "
               "exact there, or int8 on a CPU Space.")
    if args.votes_db and is_server_url(args.votes_db):
        if args.votes_dataset:
            refuse("--votes_dataset mirrors a SQLite votes file on a disk that is wiped; a --votes_db on a server "
                   "keeps the votes itself: give one of them.")
    elif args.votes_db:
        try:
            check_votes_path(Path(args.votes_db), sources["votes_db"])
        except VotesPathError as e:
            refuse(str(e))
    return args


def start_build(preset: str, training_args: list[str]) -> subprocess.Popen:
    """`python -m training --preset <preset>` into artifacts/<preset> as a child process whose output (stdout and
    stderr, tqdm's carriage returns included) the app reads; --resume when an earlier build was interrupted. On
    Linux the child is told to stop when the app's process ends, however it ends (SIGKILL included): a build never
    outlives the app that started it."""
    run_dir = ROOT / "artifacts" / preset
    resume = ["--resume"] if run_dir.exists() else []
    command = [sys.executable, "-u", "-m", "training", "--preset", preset, "--output_dir", str(run_dir), *resume,
               *training_args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=tied_to_parent())


def follow_build(child: subprocess.Popen, progress: BuildProgress) -> Optional[str]:
    """Echo the build's output to the terminal and to the page until it ends; None when it succeeded, else the
    one line that says why (its last `error:` line, else its last line)."""
    last, error = "", None
    while chunk := os.read(child.stdout.fileno(), 65536):
        text = chunk.decode("utf-8", errors="replace")
        sys.stdout.write(text)
        sys.stdout.flush()
        progress.feed(text)
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        last = lines[-1] if lines else last
        error = next((line for line in reversed(lines) if line.startswith("error:")), error)
    if child.wait() == 0:
        return None
    return (error or last or f"the training exited with code {child.returncode}").removeprefix("error:").strip()


def serve_while_building(preset: str, training_args: list[str], args: argparse.Namespace) -> None:
    """No run to serve yet: the build page at once on the app's address, the build in a child process, then the
    app on the same address (the page reloads itself into it). Ctrl-C or SIGTERM stops the build too."""
    command = f"python -m training --preset {preset}"
    progress = BuildProgress(command=command)
    page = build_page(progress)
    page.queue().launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True)
    print(f"No trained run yet: building artifacts/{preset} ({command}), once. Its progress: "
          f"http://{args.host}:{args.port}/", flush=True)
    child = start_build(preset, training_args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally below
    try:
        failed = follow_build(child, progress)
    finally:
        if child.poll() is None:  # Ctrl-C, SIGTERM or an error here: the build stops with the app
            child.terminate()
            child.wait(timeout=60)
    if failed:
        progress.set("The build failed", failed=failed)
        print(f"error: building artifacts/{preset} failed: {failed}", file=sys.stderr, flush=True)
        time.sleep(FAILED_BUILD_SHOWN_SECONDS)  # long enough for the page to show why
        close_app(page)
        sys.exit(2)
    progress.set("Loading the models into the app")
    demo = create_app([ROOT / "artifacts" / preset], votes_file(None, ROOT / "artifacts" / preset, args.votes_db),
                      args.max_batch_rows, args.max_wait_ms, args.vote_limit_per_hour, args.votes_journal,
                      args.votes_dataset, args.backend, args.max_queued_per_client, given_prices(args))
    progress.set("Ready", done=True)
    close_app(page)
    launch(demo, args)


def runs_asked(runs: list[str] | None, runs_dirs: list[str] | None) -> list[str]:
    """--run (repeated), else $RUN_REPO / $ARTIFACTS_DIR (comma separated); --runs folders expanded, in order."""
    named = runs or [r.strip() for r in (os.environ.get(RUN_REPO_VARIABLE) or os.environ.get("ARTIFACTS_DIR") or
                                         "").split(",") if r.strip()]
    for location in runs_dirs or [d for d in [os.environ.get("RUNS_DIR")] if d]:
        try:
            folder = resolve_run(location)
        except ArtifactError as e:
            refuse(str(e))
        found, unevaluated = complete_runs(folder)
        for run in unevaluated:
            print(f"warning: {run.name} is left out: its methods are trained but it has no evaluation yet (finish it "
                  "with `python -m training --resume` and the same options, or `python -m training.evaluate`).",
                  file=sys.stderr, flush=True)
        if not found:
            refuse(f"--runs {location}: no finished run (trained and evaluated) in it or its subfolders; "
                   "train one with `python -m training`.")
        named += [str(f) for f in found]
    return unique_runs(named)


def unique_runs(named: list[str]) -> list[str]:
    """Each run once, however it was spelled (artifacts/x, ./artifacts/x/, an absolute path): local folders are
    compared by where they really are; hf:// runs by their text."""
    seen, kept = set(), []
    for location in named:
        key = location if is_hub_run(location) else str(Path(location).resolve())
        if key not in seen:
            seen.add(key)
            kept.append(location)
    return kept


def choose_run(run: str | None, preset: str | None = None) -> Optional[Path]:
    """The run folder to serve: --run's, artifacts/<preset> when it is built and evaluated, else the newest finished
    run under artifacts/. None: nothing to serve yet (the preset, or the tiny demo, is built first, or its
    interrupted build resumed)."""
    if run:
        try:
            folder = resolve_run(run)
        except ArtifactError as e:
            refuse(str(e))
        if not (folder / RUN_JSON).exists():
            refuse(f"{run} is not a run folder (no {RUN_JSON}). Train one with `python -m training`.")
        return folder
    if preset:
        folder = ROOT / "artifacts" / preset
        return folder if is_finished(folder) else None
    return newest_finished_run(ROOT / "artifacts")


def votes_file(run: str | None, run_dir: Path, votes_db: str | None) -> Path | str:
    """--votes_db (a file, or a server database's URL), else <run>/votes.sqlite; a run from the Hub keeps its votes
    outside the download cache."""
    if votes_db:
        return votes_db if is_server_url(votes_db) else Path(votes_db)
    if run and is_hub_run(run):
        folder = ROOT / "artifacts" / "votes"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{run.removeprefix('hf://').replace('/', '--')}.sqlite"
    return run_dir / VOTES_FILE


def open_votes(path: Path | str, limit_per_hour: int, journal: str = "wal", dataset: str | None = None) -> VoteStore:
    """The vote store, chosen here once: a server database (its URL: shared by replicas), else a SQLite file; with a
    dataset, its mirror read back first (bad lines and records skipped, counted and said), then every new record
    mirrored."""
    if is_server_url(path):
        return ServerVoteStore(str(path), limit_per_hour)
    votes = VoteStore(path, limit_per_hour, journal)
    if dataset:
        try:
            records, bad_lines = read_back(dataset)
            added, refused = votes.merge(records)
            votes.mirror = VoteMirror(dataset, path.parent / "vote-mirror")
        except Exception as e:  # the Hub unreachable or refusing: votes stay local, and the page says so
            votes.notice = f"The vote mirror {dataset} cannot be used ({' '.join(str(e).split())[:200]}): votes are " \
                           "kept on this machine only."
        else:
            print(f"votes: {added} records read back from the dataset {dataset}", flush=True)
            if bad_lines + refused:
                votes.notice = (
                    f"The vote mirror {dataset} held {bad_lines + refused} unusable record(s) ({bad_lines} "
                    f"not JSON, {refused} not a record this version stores): skipped; every other record "
                    "was restored and new votes are mirrored."
                )
                print(f"votes: {votes.notice}", flush=True)
            votes.durability = (f"Votes are mirrored to the private dataset {dataset} every {PUSH_MINUTES * 60:.0f} s "
                                "and when the app restarts: a restart loses none, a crash at most the last "
                                f"{PUSH_MINUTES * 60:.0f} s.")
    elif os.environ.get("SPACE_ID") and journal == "wal":
        votes.durability = ("This Space's disk is wiped at every restart and no vote mirror is set "
                            "(VOTES_DATASET) nor a Storage Bucket (VOTES_DB on it, VOTES_JOURNAL=delete): votes are "
                            "lost at the next restart.")
    return votes


def given_prices(args: argparse.Namespace) -> tuple:
    """(US$ per device-hour, per CPU-hour) given on the command line or in the environment; None: the listed."""
    return args.price_per_hour, args.cpu_price_per_hour


def create_app(run_dir: Path | list[Path], votes_db: Path | str | None = None, max_rows: int = MAX_BATCH_ROWS,
               max_wait_ms: float = MAX_WAIT_MS, vote_limit_per_hour: int = VOTE_LIMIT_PER_HOUR,
               votes_journal: str = "wal", votes_dataset: str | None = None, backend: str = "exact",
               max_queued_per_client: int = MAX_QUEUED_PER_CLIENT, prices: tuple = (None, None),
               following: bool = False):
    """The page for one run, or several (a list: the first one's Metrics, Examples and Vote). With several, a run
    that cannot be read is left out and named on the page; when none can, or the only one cannot, the app refuses."""
    folders = [Path(f) for f in (run_dir if isinstance(run_dir, (list, tuple)) else [run_dir])]
    try:
        names = run_names(folders)
    except InputError as e:
        refuse(str(e))
    runs, left_out = [], {}
    bases = {}  # runs on the same base share it in memory
    for name, folder in zip(names, folders):
        try:
            data = load_run(folder)
        except ArtifactError as e:
            left_out[name] = without_paths(str(e), folder)
            print(f"warning: run {name} is left out: {e}", file=sys.stderr, flush=True)
            continue
        models = load_models(folder, max_rows=max_rows, max_wait=max_wait_ms / 1000, shared_bases=bases,
                             backend=backend, data=data)
        runs.append(ServedRun(name, data, models))
    if not runs:
        refuse(f"no run could be read: {'; '.join(f'{n}: {why}' for n, why in left_out.items())[:400]}")
    first = runs[0]
    notice = NOTICES.get(first.data.run["preset"])
    if following:
        notice = f"{FOLLOWING_NOTICE} {notice or ''}"
    elif first.data.evaluation is None:
        notice = f"{INCOMPLETE_NOTICE} {notice or ''}"
    try:
        votes = open_votes(votes_file(None, first.data.folder, votes_db and str(votes_db)), vote_limit_per_hour,
                           votes_journal, votes_dataset)
    except VotesPathError as e:
        refuse(str(e))
    state = AppState(data=first.data, models=first.models, demo_notice=notice, votes=votes, runs=ModelSet(runs),
                     left_out=left_out, max_queued_per_client=max_queued_per_client, prices=prices,
                     following=following)
    demo = build_demo(state)
    demo.app_state = state
    demo.vote_store = votes
    return demo


def close_app(demo) -> None:
    """Stops a page launched with prevent_thread_lock (tests, benchmarks, screenshots) and frees its port.

    Blocks.close() sets the server's asyncio stop event from this thread, while the server's loop may be removing
    a closed client's heartbeat waiter from it: "RuntimeError: deque mutated during iteration" (gradio 6.31, seen in
    CI). Setting it on the loop first makes close()'s own set() a no-op.
    """
    stop = demo.app.stop_event
    loop = getattr(stop, "_loop", None)  # bound by the first waiter; None: nothing waits, a plain set() is safe
    if loop is not None and loop.is_running():
        async def set_stop():
            stop.set()
        asyncio.run_coroutine_threadsafe(set_stop(), loop).result(timeout=30)
    demo.close()


def push_votes_on_exit(votes: VoteStore) -> None:
    """SIGTERM (a Space restarting or rebuilding) and a normal exit: the vote mirror's last commit first."""
    if votes.mirror is None:
        return

    def stop(signum=None, frame=None):
        votes.mirror.push_now()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    atexit.register(votes.mirror.push_now)


def launch(demo, args: argparse.Namespace) -> None:
    """Serve `demo` until the process ends (the vote mirror's last commit on SIGTERM)."""
    push_votes_on_exit(demo.vote_store)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)


def main(argv=None) -> None:
    args, training_args = parse_args(argv)
    trust_forwarded_from(args.forwarded_allow_ips)
    asked = runs_asked(args.run, args.runs)
    if len(asked) > 1:
        run_dirs = [choose_run(r) for r in asked]
    else:
        folder = choose_run(next(iter(asked), None), args.preset)
        if folder is None:
            return serve_while_building(args.preset or "tiny", training_args, args)
        run_dirs = [folder]
    first = asked[0] if asked else None

    def build(following: bool = False):
        return create_app(run_dirs, votes_file(first, run_dirs[0], args.votes_db), args.max_batch_rows,
                          args.max_wait_ms, args.vote_limit_per_hour, args.votes_journal, args.votes_dataset,
                          args.backend, args.max_queued_per_client, given_prices(args), following)

    if len(run_dirs) == 1 and not is_finished(run_dirs[0]):
        return serve_following(build, run_dirs[0], args)
    launch(build(), args)


FOLLOW_SECONDS = 10.0  # how often a run still training is looked at


def run_progress(folder: Path) -> tuple:
    """What changes as a run advances: its complete methods, and when its evaluation and serving figures landed."""
    def landed(name: str):
        return (folder / name).stat().st_mtime_ns if (folder / name).exists() else None
    return tuple(list_methods(folder)), landed(EVAL_METRICS), landed(EVAL_SERVING)


def serve_following(build, folder: Path, args: argparse.Namespace) -> None:
    """A run still training (a comparison's queue, an interrupted build): served as it stands, then served again on
    the same address each time a method completes or its evaluation lands (the newer app is built while the older
    one serves; its pages reload themselves into the newer one), until the run is finished."""
    seen, demo = run_progress(folder), build(following=True)
    push_votes_on_exit(demo.vote_store)
    print(f"{folder.name} is still training: this app serves it as it stands and serves it again as methods finish "
          f"(looked at every {FOLLOW_SECONDS:g} s).", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                prevent_thread_lock=True)
    while True:
        time.sleep(FOLLOW_SECONDS)
        now = run_progress(folder)
        if now == seen:
            continue
        finished = is_finished(folder)
        newer = build(following=not finished)
        retire(demo)
        seen, demo = now, newer
        push_votes_on_exit(demo.vote_store)
        print(f"{folder.name} advanced ({len(now[0])} methods complete{', evaluated' if finished else ''}): serving "
              "it again", flush=True)
        if finished:
            demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)
            return
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                    prevent_thread_lock=True)


def retire(demo) -> None:
    """An app replaced by a newer one: its server closed (its port freed), its runs' batchers stopped."""
    close_app(demo)
    for run in demo.app_state.runs.runs:
        run.models.close()


if __name__ == "__main__":
    main()
