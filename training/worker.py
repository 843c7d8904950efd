"""A worker of a comparison's job queue (training/jobs.py): takes one job at a time until the comparison is done.

    python -m training.worker --run artifacts/tiny                        # the run's own queue (this machine)
    python -m training.worker --run /shared/artifacts/flan-t5-base \\
        --jobs_storage postgresql+psycopg://user@db-host/comparisons        # another machine joins

`python -m training --workers N` starts N of these on its machine. Another machine joins with the same command
line: it needs the run folder on a shared file system (NFS, a cluster's shared disk) at any path, the queue's
database reachable, and this project with the same packages; every path the comparison's options name (--data, a
--method_config file) must be readable there too.
"""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import TrialState

from contract.files import METHOD_METRICS
from training import finetune, jobs, sweep
from training.cli import run_cli
from training.config import ConfigError, TrainConfig, config_from, options_of, parse_options, serving_dialogues_of
from training.methods import resolve_methods
from training.run_folder import AlreadyComplete, one_writer, trusted_to_the_queue


@dataclass
class WorkerOptions:
    run: str = field(metadata={"help": "The comparison's run folder (shared by every machine that joins)."})
    jobs_storage: Optional[str] = field(default=None, metadata={
        "help": "The queue's database: a SQLAlchemy URL (postgresql+psycopg://... for many machines). Default: the "
                "run's own <run>/jobs.sqlite3 (this machine only)."})


class Worker:
    """Setup (the queue, the comparison's settings, the run folder checked to be the same), then jobs until done."""

    def __init__(self, options: WorkerOptions):
        self.run_dir = Path(options.run)
        self.url = jobs.storage_url(self.run_dir, options.jobs_storage)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def setup(self) -> None:
        token = jobs.token_of(self.run_dir)
        if token is None:
            raise ConfigError(f"--run {self.run_dir}: no comparison's queue there ({jobs.RUN_TOKEN} is missing). "
                              "Start one with `python -m training ... --workers N`; another machine needs the same "
                              "folder on a shared file system.")
        self.study = jobs.open_queue(self.url, token)
        if "config" not in self.study.user_attrs:
            raise ConfigError(f"--run {self.run_dir}: its comparison is not in {self.url.split('@')[-1]}: give the "
                              "--jobs_storage its coordinator uses.")
        settings = self.study.user_attrs["config"]
        self.cfg = config_from({**settings, "output_dir": str(self.run_dir)})
        self.methods = {m.name: m for m in resolve_methods(self.cfg.methods, self.cfg.method_config)}
        self.trust = trusted_to_the_queue(self.run_dir)  # the queue gives each job to one worker: no folder lock

    def work(self) -> None:
        while not jobs.patiently(lambda: self.study.user_attrs.get("finished"), self.url):
            jobs.patiently(self.take_one, self.url)

    def take_one(self) -> None:
        """The next waiting job, run to its end; or a short wait when none is waiting."""
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,))
        else:
            time.sleep(jobs.POLL_SECONDS)

    def objective(self, trial: optuna.Trial) -> float:
        key = trial.user_attrs.get("job")
        if key is None:  # Optuna drew a trial of its own: the queue emptied between our look and its pop
            trial.set_user_attr("not_run", "no job was waiting")
            raise optuna.TrialPruned()
        trial.set_user_attr("worker", self.name)
        start = time.perf_counter()
        try:
            with threads_for(key):
                self.run_job(key, trial)
        except Exception as e:  # recorded with its reason; the coordinator queues it again or names it failed
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            print(f"error: {key} on {self.name}: {trial.user_attrs.get('error', e)}", file=sys.stderr, flush=True)
            raise
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - start)
        return 0.0

    def run_job(self, key: str, trial: optuna.Trial) -> None:
        """The job `key` (training/jobs.py names them): `step:name[:number]`, the number a seed, a block of test
        dialogues or a helper's."""
        if key == jobs.BASE:  # the tiny base and run.json, as the first method's training would make them
            first = next(iter(self.methods.values()))
            return finetune.build_base(self.cfg, first)
        if key.startswith(jobs.EVALUATE):
            return self.evaluate()
        step, name, *number = key.split(":")
        if step == "generate":
            return self.summarise(name, int(number[0]) if number else None)
        if self.cfg.queue.devices_per_job > 1:  # the whole method (its seeds, then the served model) under torchrun
            print(f"training {name} on {self.cfg.queue.devices_per_job} devices", flush=True)
            return self.under_torchrun(self.methods[name])
        if step == "legs" and not sweep.waiting_legs(sweep.open_study(*trial.user_attrs["sweep_study"])):
            return  # the legs it was queued for were taken meanwhile
        self.train_step(step, name, int(number[0]) if number else None, trial)

    def evaluate(self) -> None:
        from training import evaluate, serving_cost

        print("evaluating base and every method on the test dialogues", flush=True)
        evaluate.run(evaluate.for_training(self.cfg, self.run_dir))
        serving_cost.measure_if_stale(self.run_dir, serving_dialogues_of(self.cfg))

    def summarise(self, name: str, block: Optional[int]) -> None:
        """One model's summaries of the test dialogues (or of one block of them), for the evaluation to read."""
        from training import evaluate

        part = "" if block is None else f" (block {block})"
        print(f"evaluating: {name}'s summaries of the test dialogues{part}", flush=True)
        evaluation = evaluate.for_training(self.cfg, self.run_dir)
        if block is None:
            return evaluate.generate_shard(evaluation, name)
        evaluate.generate_shard(evaluation, name, block, self.cfg.queue.dialogues_per_job)

    def train_step(self, step: str, name: str, number: Optional[int], trial: optuna.Trial) -> None:
        """A step of a method's training (finetune.MethodTraining): its sweep, legs of it, a seed, or the served
        model."""
        training = finetune.MethodTraining(self.cfg, self.methods[name])
        print(f"training {name}" + STAGES[step].format(number=number),
              flush=True)  # the stage a person (and the app's build page) sees
        try:
            with one_writer(training.run_dir):
                training.setup()
                if step == "train":  # the sweep and the seeds are done (their jobs): read back, then served
                    training.tune()
                    training.serve()
                elif step == "tune":  # where its legs wait: the coordinator queues helpers while some do
                    trial.set_user_attr("sweep_study", list(training.sweep_study()))
                    training.tune()
                elif step == "legs":
                    training.take_waiting_legs()
                else:
                    training.tune(read_back=True)
                    training.train_seeds([number])
        except AlreadyComplete:
            print(f"{name} is already complete.", flush=True)

    def under_torchrun(self, method) -> None:
        """`python -m torch.distributed.run --standalone --nproc_per_node=N -m training.finetune ...`: the method's
        training in N processes, one per device this worker was given (DDP through the Trainer)."""
        if (self.run_dir / method.name / METHOD_METRICS).exists():
            print(f"{method.name} is already complete.", flush=True)
            return
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={self.cfg.queue.devices_per_job}", "-m", "training.finetune",
                   *finetune_arguments(self.cfg, method, self.run_dir)]
        done = subprocess.run(command, env={**os.environ, **self.trust})
        if done.returncode != 0:
            raise RuntimeError(f"torchrun of {method.name} ended with exit {done.returncode} (its output is above)")


@contextmanager
def threads_for(key: str):
    """A job that runs alone by plan (jobs.runs_alone) on the whole machine's threads; every other on the worker's
    share."""
    import torch

    share = torch.get_num_threads()
    alone = int(os.environ.get(jobs.WHOLE_MACHINE, share))  # a worker started by hand: its own threads
    torch.set_num_threads(alone if jobs.runs_alone(key) else share)
    try:
        yield
    finally:
        torch.set_num_threads(share)


STAGES = {"train": "", "tune": " (its sweep)", "legs": " (legs of its sweep)", "seed": " (seed {number})"}

QUEUE_ONLY = {"methods", "method", "method_config", "workers", "jobs_storage", "devices_per_job", "output_dir",
              "resume", "overwrite"}  # what the queue sets itself for a method's training command


def finetune_arguments(cfg: TrainConfig, method, run_dir: Path) -> list[str]:
    """The options of `python -m training.finetune` that train `method` of this comparison as `cfg` says (every
    setting that differs from its default), resuming in `run_dir`."""
    arguments = ["--output_dir", str(run_dir), "--resume", "true"]
    user_config = next((c for c in cfg.method_config if c.split("=", 1)[0] == method.name), None)
    arguments += ["--method_config", user_config] if user_config else ["--method", method.name]
    defaults = options_of(TrainConfig())
    for flag, value in options_of(cfg).items():
        if flag in QUEUE_ONLY or value == defaults[flag] or value is None:
            continue
        shown = [str(v) for v in value] if isinstance(value, list) else [str(value).lower() if isinstance(
            value, bool) else str(value)]
        arguments += [f"--{flag}", *shown]
    return arguments


def main(argv=None) -> None:
    def work():
        worker = Worker(parse_options(WorkerOptions, argv, __doc__))
        worker.setup()
        worker.work()

    run_cli(work)


if __name__ == "__main__":
    main()
