"""A comparison's progress, from its job queue (training/jobs.py): each job's state, worker, attempts and time,
and one line of totals with the time left.

    python -m training.status --run artifacts/tiny
    python -m training.status --run /shared/artifacts/base --jobs_storage postgresql+psycopg://user@db/comparisons
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from training import jobs
from training.cli import run_cli
from training.config import ConfigError, parse_options


@dataclass
class StatusOptions:
    run: str = field(metadata={"help": "The comparison's run folder."})
    jobs_storage: Optional[str] = field(default=None, metadata={
        "help": "The queue's database (a SQLAlchemy URL); default the run's own <run>/jobs.sqlite3."})


def status_table(states: dict) -> str:
    rows = [f"{'job':<28} {'state':<8} {'attempts':>8} {'seconds':>8}  worker / why"]
    for job in states.values():
        seconds = f"{job.seconds:.0f}" if job.seconds else "-"
        why = f"  ({job.error})" if job.error and job.state != "done" else ""
        rows.append(f"{job.key:<28} {job.state:<8} {job.attempts:>8} {seconds:>8}  {job.worker}{why}")
    return "\n".join(rows)


def main(argv=None) -> None:
    def show():
        options = parse_options(StatusOptions, argv, __doc__)
        run_dir = Path(options.run)
        if not options.jobs_storage and not (run_dir / jobs.JOBS_FILE).exists():
            raise ConfigError(f"--run {run_dir}: no job queue ({jobs.JOBS_FILE}); it was trained in one process, or "
                              "its queue is on a server: give --jobs_storage.")
        token = jobs.token_of(run_dir)
        if token is None:
            raise ConfigError(f"--run {run_dir}: no comparison's queue there ({jobs.RUN_TOKEN} is missing).")
        study = jobs.open_queue(jobs.storage_url(run_dir, options.jobs_storage), token)
        states = jobs.job_states(study.get_trials(deepcopy=False))
        workers = len({j.worker for j in states.values() if j.state == "running"})
        print(status_table(states))
        print(jobs.progress_line(states, workers) + ("; finished" if study.user_attrs.get("finished") else ""))

    run_cli(show)


if __name__ == "__main__":
    main()
