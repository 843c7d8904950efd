"""A learning-rate sweep of one method by synchronous successive halving with paused legs (training/halving.py
decides which legs run): every rate of the grid trains to 1/16 of the method's budget, is checkpointed and scored
on the VALIDATION split (ROUGE-L of greedy summaries); the best continue FROM THEIR CHECKPOINTS to 1/4, and one to
the end, which IS the served model (no retraining). The default rate keeps its place unless beaten beyond noise,
so the chosen rate can only replace it by leading it on validation. The test split is never touched. What a sweep
costs in steps over one training is in each sweep.json (`steps_over_one_training`) and in benchmarks P9.

    python -m training --preset tiny --methods all --sweep lr
    python -m training.finetune --preset tiny --method ia3 --sweep lr --sweep_lr x1 x3 x10

The legs live in an Optuna study (one per method and sweep settings) in --sweep_storage (default
sqlite:///<run>/sweep.sqlite3): one Optuna trial per leg (a rate from one rung to the next), asked and told
through its queue. Optuna keeps what a plain loop would lose: storage (finished legs are read back after a kill,
never retrained), the queue (each leg goes to exactly one process, so several processes or machines share one
storage: each rung's legs can be taken by different workers) and its heartbeat (a killed worker's leg is marked
failed and queued again; it continues from the newest complete checkpoint, so the scores and weights are those of
an uninterrupted sweep). A rate's checkpoints and, at the end, its model live in <run>/<method>/trials/lr-<rate>/
until the sweep ends; a leg taken on another machine without that folder retrains its rate from the start (same
seed, same result).
"""

import datetime
import json
import math
import os
import socket
import sqlite3
import time
import warnings
from contextlib import closing
from fractions import Fraction
from hashlib import sha256
from pathlib import Path
from typing import Callable, Optional

import optuna
import sqlalchemy
import torch
from optuna.trial import TrialState
from transformers import DataCollatorForSeq2Seq, TrainerCallback

from contract.files import SWEEP_JSON, write_run_file
from contract.protocol import MAX_NEW_TOKENS
from scoring.rouge import load_rouge_metric, references_of
from training import halving
from training.config import ConfigError, TrainConfig, options_of
from training.data import format_prompt, group_references
from training.generation import generate

HEARTBEAT_SECONDS = 5   # a working leg says it is alive this often ...
GRACE_SECONDS = 20      # ... and one silent this long (a killed worker) is failed and queued again
POLL_SECONDS = 2        # how often a process waits for legs that other processes are running
DIVERGED = 2.0          # a leg whose training loss rises above this multiple of the first logged loss is pruned

STUDY_FILE = "sweep.sqlite3"
TRIALS = "trials"       # <run>/<method>/trials/lr-<rate>: a rate's checkpoints, then its model, until the sweep ends


def trial_folder(rate: float) -> str:
    return f"lr-{rate:g}"


def validation_scores(model, tokenizer, frame, cfg: TrainConfig) -> list[float]:
    """Each of the first --sweep_eval_dialogues validation dialogues' ROUGE-L F1 of its greedy summary against its
    own references (the evaluation's metric and per-row protocol): what a sweep ranks rates by."""
    dialogues = group_references(frame).iloc[:cfg.sweep.eval_dialogues]
    model.eval()
    outputs = generate(model, tokenizer, [format_prompt(d, cfg.prompt_template) for d in dialogues["dialogue"]],
                       cfg.eval_batch_size, MAX_NEW_TOKENS, cfg.max_source_length, "sweep: validation summaries")
    scores = load_rouge_metric().compute(predictions=outputs, references=references_of(dialogues),
                                         protocol="per_row", use_aggregator=False)["rougeL"]
    return [float(s) for s in scores]


def validation_losses(model, tokenizer, dataset, cfg: TrainConfig) -> list[float]:
    """Each validation row's mean token cross-entropy of its reference summary given its dialogue (teacher-forced:
    the Trainer's eval loss, per row): what the rungs before the end compare (lower is better)."""
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(dataset), cfg.eval_batch_size):
            rows = [dataset[i] for i in range(start, min(len(dataset), start + cfg.eval_batch_size))]
            batch = {k: v.to(model.device) for k, v in collate(rows).items()}
            logits = model(**batch).logits.float()
            token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=-100,
                                                           reduction="none")
            losses += (token_loss.sum(1) / (batch["labels"] != -100).sum(1)).tolist()
    return losses


class PruneDiverged(TrainerCallback):
    """Stops a leg whose training loss is not finite or has risen above DIVERGED x the rate's first logged value
    (kept in the Trainer's log across its checkpoints): a rate that clearly fails need not go on. The leg is
    recorded as pruned."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        first = next(log["loss"] for log in state.log_history if "loss" in log)
        if not math.isfinite(loss) or loss > DIVERGED * first:
            self.trial.set_user_attr("step", state.global_step)
            self.trial.set_user_attr("pruned", f"training loss {loss:.3g} at step {state.global_step} (first "
                                               f"{first:.3g}): diverged")
            raise optuna.TrialPruned()


def parse_rates(values: list[str], default_rate: float) -> list[float]:
    """--sweep_lr: xF is F times the method's default (F may be a fraction: x1/3), anything else is a rate."""
    rates = []
    for value in values:
        try:
            rate = default_rate * float(Fraction(value[1:])) if value.startswith("x") else float(value)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--sweep_lr {value!r}: give a rate (3e-4) or a factor of the method's default "
                              "(x3, x1/3).") from None
        if not (rate > 0 and math.isfinite(rate)):
            raise ConfigError(f"--sweep_lr {value!r} gives the rate {rate}: a rate must be > 0.")
        rates.append(float(f"{rate:.6g}"))  # 6 digits: x1/3 of 3e-3 is 1e-3, not 0.0009999999
    return sorted(set(rates))


def study_name(cfg: TrainConfig, method, steps: int) -> str:
    """One study per method and everything that changes a trial's result: processes given the same settings (in
    any run folder) share the study; any other setting gets a study of its own."""
    options = options_of(cfg)
    identity = {k: options[k] for k in (
        "preset", "base_model", "tokenizer", "data", "prompt_template", "max_source_length", "max_target_length",
        "max_train_samples", "max_eval_samples", "batch_size", "gradient_accumulation_steps", "warmup_ratio",
        "weight_decay", "seed", "tiny_pretrain_steps", "sweep_eval_dialogues", "precision")}
    identity.update(method=method.peft, steps=steps, schedule=[halving.RUNGS, halving.KEEP, halving.RULE])
    digest = sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{method.name}-{digest}"


def storage_url(cfg: TrainConfig, run_dir: Path) -> str:
    return cfg.sweep.storage or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


def check_storage(url: str, option: str = "--sweep_storage") -> None:
    """Open a storage URL once, before any work: a URL that cannot work is one line, not 20 s of retries."""
    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        shown = url
    try:
        optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 10}} if url.startswith("sqlite")
                                   else None)
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
        if isinstance(e, sqlalchemy.exc.OperationalError) and "already exists" not in str(e):
            raise ConfigError(f"{option} {shown!r} cannot be opened ({' '.join(str(e).split())[:200]}); give "
                              "a database URL in a writable place.") from None
        # else another process is setting up the same fresh storage at this moment: it works (open_study retries)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as e:
        raise ConfigError(f"{option} {shown!r} cannot be opened ({' '.join(str(e).split())[:200]}); give a "
                          "database URL Optuna can write, e.g. sqlite:////path/to/sweep.sqlite3 in a writable folder, "
                          "or postgresql://user@host/db with its driver installed.") from None


def check_run_study(run_dir: Path) -> None:
    """The run's own study file (the default storage), when a resumed run has one: a file that is not a sound
    SQLite database is one line saying what to do, before any work (Optuna would fail with a traceback)."""
    path = Path(run_dir) / STUDY_FILE
    if not path.is_file():
        return
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            sound = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError as e:
        sound, why = False, str(e)
    else:
        why = "it fails SQLite's integrity check"
    if not sound:
        raise ConfigError(f"{path} cannot be read as the sweep's study ({why}): move it aside (e.g. mv {path} "
                          f"{path}.broken) and run again; the sweep then starts its legs over.")


def begin_immediate(connection) -> None:
    """Each transaction of a SQLite study (open_study listens with it once Optuna has set the storage up). pysqlite
    begins a transaction at the first write, not the first read, so Optuna's claim of a queued trial (read WAITING,
    then write RUNNING; SQLite ignores SELECT ... FOR UPDATE) let two processes both read WAITING and both run the
    same trial, and the later result then failed with "Cannot tell a COMPLETE trial". BEGIN IMMEDIATE takes
    SQLite's write lock before the read, so one process claims the trial and the other sees it RUNNING
    (SQLAlchemy's pysqlite recipe)."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_study(url: str, name: str, stale_retries: Optional[int] = 3) -> optuna.Study:
    """The study `name` on the storage `url` (created if new), with heartbeats; a stale trial (its worker stopped
    answering) is queued again up to `stale_retries` times by Optuna's callback (None: the caller decides)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sqlite = url.startswith("sqlite")
    # several writers wait for each other (60 s); pysqlite's implicit BEGIN is off: begin_immediate's instead
    engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else None
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=None if stale_retries is None else
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=stale_retries))
            if sqlite:  # after Optuna's schema set-up, which reads on one connection while writing on another
                sqlalchemy.event.listen(storage.engine, "begin", begin_immediate)
            return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
        except sqlalchemy.exc.SQLAlchemyError:
            # Two processes creating a fresh database at once race in Optuna's schema set-up (both stamp its
            # version); the loser finds the tables made on its next try.
            if attempt == 4:
                raise
            time.sleep(1 + attempt)


def leg_of(trial) -> tuple[float, int] | None:
    a = trial.user_attrs
    return (a["rate"], a["rung"]) if "rate" in a and "rung" in a else None


def finished_legs(study: optuna.Study) -> dict[tuple[float, int], halving.Scores]:
    """(rate, rung) -> per-dialogue validation scores of each leg that ran to its rung, or None for one that
    diverged or failed with an error (an interrupted leg is not finished: it is queued again)."""
    finished = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        leg, a = leg_of(t), t.user_attrs
        if leg is None or "not_run" in a or (t.state == TrialState.FAIL and "error" not in a):
            continue
        finished[leg] = a["scores"] if t.state == TrialState.COMPLETE else finished.get(leg)
    return finished


def queue(study: optuna.Study, legs: list[tuple[float, int]], default_rate: float, finished: dict) -> None:
    """Queue the legs no trial holds (waiting, running, or among the `finished` ones): each is taken by exactly one
    process."""
    waiting_or_running = (TrialState.WAITING, TrialState.RUNNING)
    held = {leg_of(t) for t in study.get_trials(deepcopy=False, states=waiting_or_running)} | set(finished)
    for leg in legs:
        if leg not in held:
            enqueue(study, *leg, default=leg[0] == default_rate)
            held.add(leg)


def enqueue(study: optuna.Study, rate: float, rung: int, default: bool) -> None:
    study.enqueue_trial({"learning_rate": rate}, user_attrs={"rate": rate, "rung": rung, "default": default})


def work_through_queue(study: optuna.Study, objective) -> None:
    """Run queued legs until none is waiting, then wait for the ones other processes are running (a killed
    worker's leg is failed and queued again: by Optuna's heartbeat, or requeue_abandoned)."""
    while True:
        requeue_abandoned(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if TrialState.WAITING in states:
            study.optimize(objective, n_trials=1, catch=(RuntimeError,))
        elif TrialState.RUNNING in states:
            time.sleep(POLL_SECONDS)
            optuna.storages.fail_stale_trials(study)
        else:
            return


def take_waiting_legs(study: optuna.Study, run_leg: Callable[[float, int, optuna.Trial], dict],
                      rungs: list[int]) -> None:
    """A helper of a sweep that another process runs (a comparison's `legs:` job): the legs waiting in its queue,
    trained here one at a time until none waits (the running ones are left to their workers; the sweep's own
    process plans the next rung)."""
    objective = make_objective(lambda rate, rung, trial: run_leg(rate, rungs[rung], trial))
    while waiting_legs(study):
        study.optimize(objective, n_trials=1, catch=(RuntimeError,))


def waiting_legs(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def requeue_abandoned(study: optuna.Study) -> None:
    """Optuna's heartbeat misses a worker killed between taking a leg and its first heartbeat (the trial stays
    RUNNING forever), and waits out the grace period for a killed worker on this machine. A RUNNING leg is
    abandoned when its worker on this host is dead, or when it never named a worker (which a live process does
    within milliseconds of taking it) and began over GRACE_SECONDS ago: it is marked failed and queued again, as
    Optuna's retry callback does."""
    host = socket.gethostname()
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is None:
            abandoned = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > GRACE_SECONDS
        else:
            where, _, pid = worker.rpartition(":")
            abandoned = where == host and not process_alive(int(pid))
        if abandoned and leg_of(t) is not None:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            enqueue(study, *leg_of(t), default=bool(t.user_attrs.get("default")))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def make_objective(run_leg: Callable[[float, int, optuna.Trial], dict]):
    def objective(trial: optuna.Trial) -> float:
        leg = leg_of(trial)
        if leg is None:  # Optuna drew a trial of its own: the queue emptied between our look and its pop
            trial.set_user_attr("not_run", "the queue was empty (another process took the last leg)")
            raise optuna.TrialPruned()
        taken = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if leg_of(t) == leg and t.number != trial.number]
        if taken:  # two processes queued the same leg at the same moment: run it once
            trial.set_user_attr("not_run", f"this leg is already trial {taken[0].number}")
            raise optuna.TrialPruned()
        trial.suggest_float("learning_rate", 1e-8, 10.0, log=True)  # the queued rate, recorded as Optuna's param
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        start = time.perf_counter()
        try:
            result = run_leg(*leg, trial)
        except optuna.TrialPruned:  # diverged: the reason is in its attributes
            trial.set_user_attr("seconds", time.perf_counter() - start)
            raise
        except Exception as e:  # recorded with its reason, then Optuna marks it failed
            trial.set_user_attr("seconds", time.perf_counter() - start)
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            raise
        for key, value in result.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return halving.mean(result["scores"])
    return objective


STATUS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def leg_status(t) -> str:
    if t.state == TrialState.FAIL and "error" not in t.user_attrs:
        return "interrupted"  # its worker stopped answering (killed): the leg was queued again
    return STATUS[t.state]


def leg_rows(study: optuna.Study, steps: list[int]) -> dict[float, list[dict]]:
    """Each rate's legs that ran (or were interrupted), in the order they were created."""
    legs = {}
    for t in study.get_trials(deepcopy=False):
        leg, a = leg_of(t), t.user_attrs
        if leg is None or "not_run" in a or t.state == TrialState.WAITING:
            continue
        rate, rung = leg
        legs.setdefault(rate, []).append({
            "trial": t.number, "rung": rung, "from_step": a.get("from_step"), "step": a.get("step", steps[rung]),
            "status": leg_status(t), "metric": a.get("metric"), "loss": a.get("loss"), "rougeL": a.get("rougeL"),
            "scores": a.get("scores"), "seconds": a.get("seconds"), "worker": a.get("worker"),
            **{k: a[k] for k in ("error", "pruned") if k in a}})
    return legs


def rate_rows(legs: dict[float, list[dict]], result: halving.Plan, default_rate: float) -> list[dict]:
    """One row per rate tried: its legs, how far it got, its score there and why it stopped."""
    rows = []
    for rate, its_legs in legs.items():
        scored = [leg for leg in its_legs if leg["status"] == "complete"]
        last = its_legs[-1]
        status = "complete" if rate == result.winner else "stopped" if rate in result.stopped else last["status"]
        rows.append({
            "learning_rate": rate, "default": rate == default_rate, "status": status,
            "validation": {k: scored[-1][k] if scored else None for k in ("step", "loss", "rougeL")},
            "steps": max((leg["step"] for leg in scored), default=0), "legs": its_legs,
            "seconds": sum(leg["seconds"] or 0 for leg in its_legs),
            **({"stopped": result.stopped[rate]} if rate in result.stopped else {}),
            **{k: last[k] for k in ("error", "pruned") if k in last}})
    return rows


def every_leg(legs: dict[float, list[dict]]) -> list[dict]:
    return [leg for its in legs.values() for leg in its]


def steps_trained(legs: list[dict]) -> int:
    """Optimizer steps of the legs that ran to their rung."""
    return sum(leg["step"] - (leg["from_step"] or 0) for leg in legs if leg["status"] == "complete")


def rung_costs(legs: dict[float, list[dict]], steps: list[int]) -> list[dict]:
    rows = []
    for rung, step in enumerate(steps):
        done = [leg for leg in every_leg(legs) if leg["rung"] == rung]
        rows.append({"step": step, "legs": len(done), "steps_trained": steps_trained(done),
                     "seconds": sum(leg["seconds"] or 0 for leg in done)})
    return rows


class SweepFailed(ConfigError):
    """No leg gave a usable model: the method fails, naming its rates and what to try."""


def failure(method: str, rows: list[dict], floor: float) -> SweepFailed:
    def said(r):
        v = r["validation"]
        if v["rougeL"] is not None:
            return f"{r['learning_rate']:g}: ROUGE-L {v['rougeL']:.3f} at step {v['step']}"
        if v["loss"] is not None:
            return f"{r['learning_rate']:g}: {r['status']} at step {v['step']} (validation loss {v['loss']:.3g})"
        return f"{r['learning_rate']:g}: {r['status']}"
    return SweepFailed(
        f"sweep {method}: no rate gave a usable model (validation ROUGE-L above the floor, "
        f"{floor:.3f}, the untrained model's unless --sweep_floor): "
        f"{'; '.join(said(r) for r in rows) or 'no leg finished'}. Try lower rates "
        "(--sweep_lr x1/30 x1/10 x1/3), a longer budget (--max_steps, --num_train_epochs), or --learning_rate "
        "without --sweep."
    )


def study_floor(cfg: TrainConfig, study: optuna.Study, untrained_rouge_l: Callable[[], float]) -> float:
    """What the served rate must beat: --sweep_floor as a number, else (untrained) the method's model before any
    training, scored once per study (kept in it: a resumed or second process reads it back)."""
    if cfg.sweep.floor != "untrained":
        return float(cfg.sweep.floor)
    if "floor" not in study.user_attrs:
        start = time.perf_counter()
        study.set_user_attr("floor", untrained_rouge_l())
        study.set_user_attr("floor_seconds", time.perf_counter() - start)
    return study.user_attrs["floor"]


def run_sweep(cfg: TrainConfig, method, run_dir: Path, default_rate: float, steps: int,
              run_leg: Callable[[float, int, optuna.Trial], dict], untrained_rouge_l: Callable[[], float]) -> dict:
    """Sweep `method`'s rate (or read back the finished sweep) and write <run>/<method>/sweep.json.
    `run_leg(rate, step, trial)` trains `rate` from its newest checkpoint to `step` (the full `steps`: its model
    and metrics.json in its trial folder; else a complete checkpoint there) and returns {"scores": what the rule
    compares, higher is better (negated per-row validation losses before the end, per-dialogue ROUGE-L at it),
    "from_step": where it started, ...}; `untrained_rouge_l()` scores the method's untrained model: the floor the
    served rate must beat (or --sweep_floor). Raises SweepFailed when no rate gives a model."""
    start = time.perf_counter()
    first = parse_rates(cfg.sweep.lr, default_rate)
    rungs = halving.rung_steps(steps)
    url, name = storage_url(cfg, run_dir), study_name(cfg, method, steps)
    study = open_study(url, name)
    floor = study_floor(cfg, study, untrained_rouge_l)
    objective = make_objective(lambda rate, rung, trial: run_leg(rate, rungs[rung], trial))

    def shown(rung: int, score: float) -> str:  # paused legs are scored by negated loss, the end by ROUGE-L
        return f"validation ROUGE-L {score:.3f}" if rung == len(rungs) - 1 else f"validation loss {-score:.3f}"

    while not (result := halving.plan(finished := finished_legs(study), first, default_rate, rungs, floor,
                                      shown)).done:
        queue(study, result.legs, default_rate, finished)
        work_through_queue(study, objective)
    legs = leg_rows(study, rungs)
    rows = rate_rows(legs, result, default_rate)
    if result.winner is None:
        raise failure(method.name, rows, floor)
    first_rung = {rate: scores for (rate, rung), scores in finished.items() if rung == 0}
    doc = sweep_document(cfg, method, result, rows, legs, rungs, first_rung, default_rate, floor)
    doc["first_grid"] = first
    doc["seconds"] += study.user_attrs.get("floor_seconds", 0.0)
    doc.update(wall_seconds_this_process=time.perf_counter() - start,
               study={"storage": url if url.startswith("sqlite") else url.split("@")[-1], "name": name})
    write_run_file(run_dir, f"{method.name}/{SWEEP_JSON}", doc)
    tried = ", ".join(f"{r['learning_rate']:g}" for r in sorted(rows, key=lambda r: r["learning_rate"]))
    if result.below_floor:
        print(f"sweep {method.name}: warning: {doc['note']}.", flush=True)
    cost = f"{doc['steps_over_one_training']:.2f}x one training's steps"
    caveat = "" if doc["bracketed"] else f" (NOT bracketed: {doc['note']})"
    print(f"sweep {method.name}: chose learning rate {result.winner:g} of {tried}, {cost}{caveat}.", flush=True)
    return doc


def sweep_document(cfg: TrainConfig, method, result: halving.Plan, rows: list[dict], legs: dict, rungs: list[int],
                   first_rung: dict[float, halving.Scores], default_rate: float, floor: float) -> dict:
    """What sweep.json says: every rate and leg, the rule, the rungs and their cost, the choice and its caveats."""
    bracketed = halving.is_bracketed(first_rung, result.winner)
    tried = ", ".join(f"{r:g}" for r in sorted(first_rung))
    note = ("" if bracketed else f"the chosen rate {result.winner:g} has no scored rate on both sides among the rates "
            f"tried ({tried}; the grid extends at most {halving.MAX_EXTENSIONS} times): a better one may lie beyond")
    if result.below_floor:
        note = (f"no rate beat the untrained model ({floor:.3f}): the preset rate is served, as a run without "
                "--sweep would serve it")
    trained = steps_trained(every_leg(legs))
    return {"schema_version": 2, "method": method.name, "parameter": "learning_rate",
            "metric": "validation loss at the rungs before the end, validation rougeL at the end",
            "rule": halving.RULE, "default_learning_rate": default_rate, "trials": rows,
            "chosen_learning_rate": result.winner, "bracketed": bracketed, "rungs": rungs,
            "rung_costs": rung_costs(legs, rungs), "untrained_validation_rougeL": floor,
            "below_untrained": result.below_floor, "note": note, "budget_steps": rungs[-1],
            "steps_trained": trained, "steps_over_one_training": trained / rungs[-1],
            "validation_dialogues": cfg.sweep.eval_dialogues,
            "seconds": sum(r["seconds"] for r in rows)}
