"""One queue of jobs per comparison, on a database, taken by any number of workers on any number of machines.

    python -m training --preset tiny --methods all --workers 2            # 2 workers on this machine
    python -m training --preset flan-t5-base --methods all --workers 8 \\
        --jobs_storage postgresql+psycopg://user@db-host/comparisons        # 8 GPUs here, others may join:
    python -m training.worker --run /shared/artifacts/flan-t5-base \\
        --jobs_storage postgresql+psycopg://user@db-host/comparisons        # on another machine
    python -m training.status --run artifacts/tiny                        # jobs done / running / waiting / failed

The run's base is the first job. Each method then has a job per step of its training (training/finetune.py's
MethodTraining): its sweep (`tune:<method>`, with --sweep lr; while legs of a rung wait in the sweep's own queue,
`legs:<method>:<n>` jobs take them on free workers), each seed beyond the served one (`seed:<method>:<seed>`, once
the rate is known: the seeds of one method train side by side) and the served model (`train:<method>`, once its
seeds have ended); the evaluation of base and every method is queued once every
training has ended. A job is queued when the jobs it needs are done (comparison_plan); one whose need failed for
good is not run, and named. The queue is an Optuna study on the run's storage (SQLite beside the run,
`<run>/jobs.sqlite3`, by default; any SQLAlchemy URL for many machines): a job is an enqueued trial with its key in
the trial's attributes, a worker takes one with Optuna's own claim (study.optimize, one trial at a time), and
Optuna's heartbeat marks a silent worker's job failed (sweep.open_study: the same storage, claim and heartbeat the
sweeps use). The coordinator (`python -m training --workers N`) is the only process that queues: after a failure,
the job again, until MAX_ATTEMPTS; a job is a pure function of its trials (job_states), so a coordinator killed and
started again with --resume continues where the queue stands. A job taken again continues from its newest complete
checkpoint (every worker trains with --resume). The results are those of one process running the methods in
order: each method and seed trains from the same seed, on the same splits, from the same base (built once, by a
worker, as the first job).
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Optional

import optuna
import sqlalchemy
from optuna.trial import TrialState

from contract.children import tied_to_parent
from contract.files import RUN_JSON, read_run_file
from training import sweep
from training.config import ConfigError, TrainConfig, eval_limit_of, options_of, run_folder_of
from training.methods import Method

JOBS_FILE = "jobs.sqlite3"     # <run>/jobs.sqlite3: the default queue (one machine)
RUN_TOKEN = ".comparison"      # <run>/.comparison: the queue's token, so a worker knows it sees the same folder
STUDY = "comparison"
BASE, EVALUATE = "base", "evaluate"   # the first job (the run's base and run.json) and the last
BASE_MODEL = "base"            # the model without fine-tuning, as the evaluation names it (its summaries: a job)
ENDED = ("done", "failed")     # a job in one of these states will not run again
MAX_ATTEMPTS = 2               # a job that fails this often is failed for good (named; the comparison goes on)
POLL_SECONDS = 1.0


RETRIES = 5                    # a lost database connection is tried again this often (1, 2, 4, 8 s apart)


def patiently(action, url: str):
    """`action()`, tried again while the queue's database cannot be reached; then one line that says so."""
    for attempt in range(RETRIES):
        try:
            return action()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as e:
            if attempt == RETRIES - 1:
                shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
                why = " ".join(str(e).split())[:160]
                raise ConfigError(f"the job queue's database {shown} cannot be reached ({why}); check the server and "
                                  "the network, then run the same command with --resume.") from None
            print(f"jobs: the queue's database did not answer ({type(e).__name__}); trying again", flush=True)
            time.sleep(2 ** attempt)


def storage_url(run_dir: Path, url: Optional[str] = None) -> str:
    return url or f"sqlite:///{(Path(run_dir) / JOBS_FILE).resolve()}"


def train_key(method: str) -> str:
    return f"train:{method}"


def generate_key(model: str, block: int = 0, blocks: int = 1) -> str:
    """A model's summaries of the test dialogues (one job), or of block `block` of them (training/shards.py)."""
    return f"generate:{model}" if blocks == 1 else f"generate:{model}:{block}"


def tune_key(method: str) -> str:
    return f"tune:{method}"


def seed_key(method: str, seed: int) -> str:
    return f"seed:{method}:{seed}"


def legs_key(method: str, helper: int) -> str:
    return f"legs:{method}:{helper}"


def comparison_plan(cfg: TrainConfig, methods: list[Method], blocks: int = 1) -> dict[str, list[str]]:
    """Every job of the comparison -> the jobs it needs, in the order they are queued when ready; each model's
    summaries in `blocks` jobs."""
    plan = {BASE: []}
    for method in methods:
        rate_known = [BASE]
        if cfg.sweep.over:
            plan[tune_key(method.name)] = [BASE]
            rate_known = [tune_key(method.name)]
        seeds = [seed_key(method.name, s) for s in range(cfg.seed + 1, cfg.seed + cfg.seeds)
                 if cfg.queue.devices_per_job == 1]  # under torchrun, the method's job trains its seeds itself
        plan.update({key: rate_known for key in seeds})
        plan[train_key(method.name)] = rate_known + seeds
    for model, needs in [(BASE_MODEL, BASE), *((m.name, train_key(m.name)) for m in methods)]:
        plan.update({generate_key(model, block, blocks): [needs] for block in range(blocks)})
    shards = [key for key in plan if key.startswith("generate:")]
    plan[evaluate_key(methods)] = [train_key(m.name) for m in methods] + shards
    return plan


def evaluate_key(methods: list[Method]) -> str:
    """The evaluation of one set of methods: a resumed comparison with more methods is evaluated again."""
    names = ",".join(sorted(m.name for m in methods))
    return f"{EVALUATE}:{sha256(names.encode()).hexdigest()[:8]}"


@dataclass
class JobState:
    """What the queue says of one job, from all its trials."""
    key: str
    state: str                # waiting, running, done, failed (for good), retry (failed; to be queued again)
    attempts: int             # trials that ended without completing
    worker: str = ""          # host:pid of the last worker that took it
    seconds: Optional[float] = None
    error: str = ""
    sweep_study: Optional[list] = None  # a tune or legs job's [storage URL, study name]: where its legs wait


def job_states(trials) -> dict[str, JobState]:
    """Each job's state from its trials, in the order the jobs were first queued."""
    by_key: dict[str, list] = {}
    for t in trials:
        if "job" in t.user_attrs:
            by_key.setdefault(t.user_attrs["job"], []).append(t)
    states = {}
    for key, tries in by_key.items():
        ended = [t for t in tries if t.state in (TrialState.FAIL, TrialState.PRUNED)]
        last = tries[-1]
        error = next((t.user_attrs["error"] for t in reversed(ended) if "error" in t.user_attrs),
                     "its worker stopped answering" if ended else "")
        if any(t.state == TrialState.COMPLETE for t in tries):
            done = next(t for t in tries if t.state == TrialState.COMPLETE)
            state = JobState(key, "done", len(ended), done.user_attrs.get("worker", ""),
                             done.user_attrs.get("seconds"))
        elif any(t.state == TrialState.RUNNING for t in tries):
            state = JobState(key, "running", len(ended), last.user_attrs.get("worker", ""), error=error)
        elif any(t.state == TrialState.WAITING for t in tries):
            state = JobState(key, "waiting", len(ended), error=error)
        else:
            state = JobState(key, "failed" if len(ended) >= MAX_ATTEMPTS else "retry", len(ended),
                             last.user_attrs.get("worker", ""), error=error)
        state.sweep_study = next((t.user_attrs["sweep_study"] for t in tries if "sweep_study" in t.user_attrs), None)
        states[key] = state
    return states


def open_queue(url: str, token: str) -> optuna.Study:
    """The comparison's queue (one study per comparison: many may share a server); a stale job is failed by
    Optuna's heartbeat and queued again by the coordinator."""
    return sweep.open_study(url, f"{STUDY}-{token}", stale_retries=None)


def token_of(run_dir: Path) -> Optional[str]:
    """The comparison's token, from its run folder (None: the folder holds no comparison's queue)."""
    path = Path(run_dir) / RUN_TOKEN
    return path.read_text().strip() if path.is_file() else None


def enqueue(study: optuna.Study, key: str, sweep_study: Optional[list] = None) -> None:
    where = {} if sweep_study is None else {"sweep_study": sweep_study}
    study.enqueue_trial({}, user_attrs={"job": key, **where})


def seconds_left(states: dict[str, JobState], workers: int, planned: tuple[str, ...] = ()) -> Optional[float]:
    """The time left, split among the workers: each job not yet done (and each `planned` one not yet queued) at
    the mean measured seconds of the done jobs of its step (a summary block takes seconds, a training minutes),
    else of every done job; None before any job is done."""
    done = [j for j in states.values() if j.state == "done" and j.seconds]
    if not done:
        return None
    by_step: dict[str, list[float]] = {}
    for job in done:
        by_step.setdefault(job.key.split(":")[0], []).append(job.seconds)
    every = [j.seconds for j in done]
    left = [j.key for j in states.values() if j.state in ("waiting", "retry", "running")]
    left += [key for key in planned if key not in states]
    expected = [by_step.get(key.split(":")[0], every) for key in left]
    return sum(sum(times) / len(times) for times in expected) / max(1, workers)


def progress_line(states: dict[str, JobState], workers: int, planned: tuple[str, ...] = ()) -> str:
    """jobs done / running / waiting / failed, who runs what, and the time left from the measured job times."""
    count = {s: sum(j.state == s for j in states.values()) for s in ("done", "running", "waiting", "failed")}
    waiting = count["waiting"] + sum(j.state == "retry" for j in states.values())
    running = ", ".join(f"{j.key} on {j.worker or '?'}" for j in states.values() if j.state == "running")
    seconds = seconds_left(states, workers, planned)
    left = ""
    if seconds:
        left = f"; about {seconds / 60:.0f} min left" if seconds >= 60 else "; under a minute left"
    return (f"jobs: {count['done']} done, {count['running']} running{f' ({running})' if running else ''}, "
            f"{waiting} waiting, {count['failed']} failed{left}")


WHOLE_MACHINE = "COMPARISON_MACHINE_THREADS"  # a worker's environment: the threads one process would use here


def runs_alone(key: str) -> bool:
    """The base (the first job: nothing else is queued until it is done) and the evaluation (the last: every other
    job has ended) run alone by plan, so their worker takes the whole machine's threads for them: as one process
    would, and the evaluation's serving cost is measured as one process measures it."""
    return key == BASE or key.startswith(EVALUATE)


def worker_environment(index: int, workers: int, devices_per_job: int = 1) -> dict:
    """One worker's share of this machine: its own GPUs (devices_per_job of them) where there are GPUs, else an
    equal part of the cores for each of its processes (and the whole machine's threads for a job that runs
    alone)."""
    import torch

    env = {**os.environ, WHOLE_MACHINE: str(torch.get_num_threads())}
    if torch.cuda.is_available():
        gpus = [(index * devices_per_job + k) % torch.cuda.device_count() for k in range(devices_per_job)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    elif "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (workers * devices_per_job)))
    return env


class Comparison:
    """The coordinator of one comparison: setup (the queue), run (local workers started; the base built once, by a
    worker, as the first job; a training job per method once it is there; the evaluation once every training has
    ended; the queue kept moving and its progress said), then the failures."""

    def __init__(self, cfg: TrainConfig, methods: list[Method], workers: int):
        self.cfg, self.methods, self.workers = cfg, methods, workers
        self.run_dir = run_folder_of(cfg)
        self.plan: Optional[dict[str, list[str]]] = None  # once the base is there (the test set's size known)
        self.url = storage_url(self.run_dir, cfg.queue.storage)
        self.local: dict[int, subprocess.Popen] = {}   # worker index -> its process
        self.study: Optional[optuna.Study] = None
        self.sweeps: dict[str, optuna.Study] = {}       # the methods' sweeps, by study name (their legs waiting)

    def setup(self) -> None:
        """The queue, its settings and the run folder's token (the jobs are queued by run)."""
        token = token_of(self.run_dir)
        if token and not self.cfg.resume:
            raise ConfigError(f"{self.run_dir} already has a comparison's queue: pass --resume to continue it, or "
                              "--output_dir for a new run.")
        token = token or secrets.token_hex(8)
        self.study = open_queue(self.url, token)
        config = {**options_of(self.cfg), "output_dir": None, "resume": True, "workers": 0}  # what workers read
        self.study.set_user_attr("config", json.loads(json.dumps(config)))
        self.study.set_user_attr("finished", False)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / RUN_TOKEN).write_text(token)

    def run(self) -> list[str]:
        """Until every job has ended: local workers kept alive, failed jobs queued again, progress said. Returns
        the jobs failed for good, one line each."""
        for index in range(self.workers):
            self.start_worker(index)
        said = ""
        try:
            while True:
                states = patiently(self.step, self.url)
                line = progress_line(states, max(1, self.workers), tuple(self.plan or ()))
                if line != said:
                    print(line, flush=True)
                    said = line
                evaluation = states.get(evaluate_key(self.methods))
                if evaluation is not None and evaluation.state in ("done", "failed"):
                    break
                time.sleep(POLL_SECONDS)
        finally:
            self.study.set_user_attr("finished", True)
            self.stop_workers()
        return [f"{j.key}: {j.error}" for j in states.values() if j.state == "failed"]

    def step(self) -> dict[str, JobState]:
        """One look at the queue: dead local workers' jobs failed (and the workers started again), stale jobs
        failed, failed jobs queued again, each job queued once the jobs it needs are done (comparison_plan)."""
        self.fail_dead_workers()
        optuna.storages.fail_stale_trials(self.study)
        states = job_states(self.study.get_trials(deepcopy=False))
        for job in states.values():
            if job.state == "retry":
                print(f"jobs: {job.key} failed ({job.error}); queued again", flush=True)
                enqueue(self.study, job.key, job.sweep_study)
                job.state = "waiting"
        base = states.get(BASE)
        if base is not None and base.state == "failed":
            raise ConfigError(f"the run's base could not be built, twice: {base.error}")
        if self.plan is None and base is not None and base.state == "done":
            self.plan = comparison_plan(self.cfg, self.methods, self.summary_blocks())
        for key, needs in (self.plan or {BASE: []}).items():
            if key in states or any(n not in states or states[n].state not in ENDED for n in needs):
                continue
            failed = [n for n in needs if states[n].state != "done"]
            if failed and not key.startswith(EVALUATE):  # the evaluation scores whatever trained
                states[key] = JobState(key, "failed", 0, error=f"not run: {failed[0]} failed")
                continue
            enqueue(self.study, key)
            states[key] = JobState(key, "waiting", 0)
        self.queue_leg_helpers(states)
        return states

    def summary_blocks(self) -> int:
        """How many jobs each model's summaries of the test dialogues take (--dialogues_per_job)."""
        from training import shards
        from training.data import first_dialogues
        from training.generation import EVAL_BATCH_SIZE

        source = read_run_file(self.run_dir, RUN_JSON)["data_source"]
        dialogues = len(first_dialogues(source, "test", eval_limit_of(self.cfg)))  # the evaluation's, as it reads them
        return shards.block_count(dialogues, self.cfg.queue.dialogues_per_job, EVAL_BATCH_SIZE)

    def queue_leg_helpers(self, states: dict[str, JobState]) -> None:
        """While legs wait in the sweep of a running tune job, a `legs:` job for each that no queued helper will
        take: a free worker trains it beside the tune job, so a rung's legs train side by side."""
        for job in [j for j in states.values() if j.key.startswith("tune:") and j.state == "running"]:
            if job.sweep_study is None:  # its worker has not opened the sweep yet
                continue
            method = job.key.split(":", 1)[1]
            helpers = [j for j in states.values() if j.key.startswith(f"legs:{method}:")]
            idle = sum(j.state == "waiting" for j in helpers)
            for number in range(len(helpers) + 1, len(helpers) + 1 + self.waiting_legs(job.sweep_study) - idle):
                key = legs_key(method, number)
                enqueue(self.study, key, job.sweep_study)
                states[key] = JobState(key, "waiting", 0, sweep_study=job.sweep_study)

    def waiting_legs(self, sweep_study: list) -> int:
        url, name = sweep_study
        if name not in self.sweeps:
            self.sweeps[name] = sweep.open_study(url, name)
        return sweep.waiting_legs(self.sweeps[name])

    def start_worker(self, index: int) -> None:
        command = [sys.executable, "-u", "-m", "training.worker", "--run", str(self.run_dir), "--jobs_storage",
                   self.url]
        environment = worker_environment(index, self.workers, self.cfg.queue.devices_per_job)
        self.local[index] = subprocess.Popen(command, env=environment,
                                             preexec_fn=tied_to_parent())

    def fail_dead_workers(self) -> None:
        """A local worker that died (killed, out of memory): its running job is failed at once (no need to wait
        for the heartbeat's grace period) and a new worker takes its place while jobs remain."""
        host = socket.gethostname()
        for index, process in list(self.local.items()):
            if process.poll() is None:
                continue
            mine = f"{host}:{process.pid}"
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.user_attrs.get("worker") == mine:
                    self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            if process.returncode == 2:  # it refused to work, in one line above: starting another would too
                raise ConfigError(f"worker {mine} stopped with the error above: mend it, then run the same command "
                                  "with --resume.")
            if not self.study.user_attrs.get("finished"):
                print(f"jobs: worker {mine} ended (exit {process.returncode}); starting another", flush=True)
                self.start_worker(index)

    def stop_workers(self) -> None:
        """Workers leave by themselves once the comparison is finished; any still there after a while is told."""
        deadline = time.monotonic() + 30
        for process in self.local.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=30)
