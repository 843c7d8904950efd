"""A learning-rate sweep of one method, at its FULL budget: every trial is scheduled for all of the method's steps
and scored on the VALIDATION split (ROUGE-L of greedy summaries) at a few rungs (a quarter, half, the end: RUNGS);
a trial behind the leader at a rung (the best score any trial reached there) stops there (successive halving that
keeps the leader, written plainly), and the default rate always runs to the end, so the chosen rate can only beat
it on validation. The best complete trial (above a floor: the untrained model's score) is chosen, and IS the
served model: no retraining. When the best sits at an edge of the rates tried, the grid grows one step that way (at
most twice); sweep.json says when the chosen rate is not bracketed. The test split is never touched.

    python -m training --preset tiny --methods all --sweep lr
    python -m training.finetune --preset tiny --method ia3 --sweep lr --sweep_lr x1 x3 x10

The trials live in an Optuna study (one per method and sweep settings) in --sweep_storage (default
sqlite:///<run>/sweep.sqlite3). Optuna is used for what a grid search outgrows: storage (finished trials are
read back after a kill, never retrained), its trial queue (each rate goes to exactly one process, so several
processes or machines can share one storage) and its heartbeat (a killed worker's trial is marked failed and its
rate queued again). Each complete trial's model is saved in <run>/<method>/trials/lr-<rate>/ until the sweep ends.
"""

import datetime
import json
import math
import os
import socket
import time
import warnings
from fractions import Fraction
from hashlib import sha256
from pathlib import Path
from typing import Callable

import optuna
import sqlalchemy
from optuna.trial import TrialState
from transformers import TrainerCallback

from contract.files import SWEEP_JSON, write_run_file
from contract.protocol import MAX_NEW_TOKENS
from training.config import ConfigError, TrainConfig
from training.data import format_prompt, group_references
from training.evaluate import load_rouge_metric
from training.generation import generate

HEARTBEAT_SECONDS = 5   # a working trial says it is alive this often ...
GRACE_SECONDS = 20      # ... and one silent this long (a killed worker) is failed and its rate queued again
MAX_EXTENSIONS = 2      # grid steps added beyond the first grid when the best rate sits at an edge
POLL_SECONDS = 2        # how often a process waits for trials that other processes are running
DIVERGED = 2.0          # a trial whose training loss rises above this multiple of its first logged loss is pruned

RUNGS = (0.25, 0.5, 1.0)  # fractions of the budget where a trial is scored; the last is its end

STUDY_FILE = "sweep.sqlite3"
TRIALS = "trials"       # <run>/<method>/trials/lr-<rate>: a trial's model, complete or absent, until the sweep ends


def trial_folder(rate: float) -> str:
    return f"lr-{rate:g}"


def rung_steps(full_steps: int) -> list[int]:
    """The steps (before the end) where trials are scored."""
    return sorted({max(1, round(full_steps * f)) for f in RUNGS[:-1]} - {full_steps})


def rung_leader(study: optuna.Study, rung: int, rate: float) -> tuple[float, float] | None:
    """(rate, validation ROUGE-L) of the best trial of ANOTHER rate at a rung, once one got there (else None): the
    default rate or an earlier challenger, whether or not it went on (successive halving keeps only the leader).
    A rate's own earlier, interrupted trial is not its rival."""
    scores = [(t.user_attrs[f"rung_{rung}"]["rougeL"], t.user_attrs["rate"]) for t in study.get_trials(deepcopy=False)
              if f"rung_{rung}" in t.user_attrs and t.user_attrs.get("rate", rate) != rate]
    return max(scores)[::-1] if scores else None


class Rungs(TrainerCallback):
    """Scores the trial's model on validation at each rung step and stops the trial there when it is behind the
    leader at the same rung (the best score any other trial reached there: the default's, or a challenger's);
    the default rate itself is never stopped (it always reaches the end, so nothing served is worse than it)."""

    def __init__(self, trial: optuna.Trial, steps: list[int], score: Callable):
        self.trial, self.steps, self.score = trial, steps, score
        self.is_default = bool(trial.user_attrs.get("default"))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.steps:
            return
        rung, step = self.steps.index(state.global_step), state.global_step
        value = self.score(model)
        model.train()
        self.trial.set_user_attr(f"rung_{rung}", {"step": step, "rougeL": value})
        leader = None if self.is_default else rung_leader(self.trial.study, rung, self.trial.user_attrs["rate"])
        if leader is not None and value < leader[1]:
            self.trial.set_user_attr("steps", step)
            self.trial.set_user_attr("stopped", f"at step {step}: validation ROUGE-L {value:.3f} behind rate "
                                                f"{leader[0]:g}'s {leader[1]:.3f}")
            raise optuna.TrialPruned()


def validation_rouge_l(model, tokenizer, frame, cfg: TrainConfig) -> float:
    """ROUGE-L F1 of greedy summaries of the first --sweep_eval_dialogues validation dialogues, each against its
    own references (the evaluation's metric and per-row protocol): what a sweep ranks rates by."""
    dialogues = group_references(frame).iloc[:cfg.sweep_eval_dialogues]
    model.eval()
    outputs = generate(model, tokenizer, [format_prompt(d, cfg.prompt_template) for d in dialogues["dialogue"]],
                       cfg.eval_batch_size, MAX_NEW_TOKENS, cfg.max_source_length, "sweep: validation summaries")
    return load_rouge_metric().compute(predictions=outputs, references=[list(r) for r in dialogues["references"]],
                                       protocol="per_row")["rougeL"]


class PruneDiverged(TrainerCallback):
    """Stops a trial whose training loss is not finite or has risen above DIVERGED x its first logged value: a
    rate that clearly fails need not spend its whole budget. The trial is recorded as pruned."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.first = trial, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.first = self.first if self.first is not None else loss
        if not math.isfinite(loss) or loss > DIVERGED * self.first:
            self.trial.set_user_attr("steps", state.global_step)
            self.trial.set_user_attr("pruned", f"training loss {loss:.3g} at step {state.global_step} (first "
                                               f"{self.first:.3g}): diverged")
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
    identity = {k: getattr(cfg, k) for k in (
        "preset", "base_model", "tokenizer", "data", "prompt_template", "max_source_length", "max_target_length",
        "max_train_samples", "max_eval_samples", "batch_size", "gradient_accumulation_steps", "warmup_ratio",
        "weight_decay", "seed", "tiny_pretrain_steps", "sweep_eval_dialogues", "precision")}
    identity.update(method=method.peft, steps=steps)
    digest = sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{method.name}-{digest}"


def storage_url(cfg: TrainConfig, run_dir: Path) -> str:
    return cfg.sweep_storage or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


def check_storage(url: str) -> None:
    """Open --sweep_storage once, before any work: a URL that cannot work is one line, not 20 s of retries."""
    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        shown = url
    try:
        optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 10}} if url.startswith("sqlite")
                                   else None)
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
        if isinstance(e, sqlalchemy.exc.OperationalError) and "already exists" not in str(e):
            raise ConfigError(f"--sweep_storage {shown!r} cannot be opened ({' '.join(str(e).split())[:200]}); give "
                              "a database URL in a writable place.") from None
        # else another process is setting up the same fresh storage at this moment: it works (open_study retries)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as e:
        raise ConfigError(f"--sweep_storage {shown!r} cannot be opened ({' '.join(str(e).split())[:200]}); give a "
                          "database URL Optuna can write, e.g. sqlite:////path/to/sweep.sqlite3 in a writable folder, "
                          "or postgresql://user@host/db with its driver installed.") from None


def begin_immediate(connection) -> None:
    """Each transaction of a SQLite study (open_study listens with it once Optuna has set the storage up). pysqlite
    begins a transaction at the first write, not the first read, so Optuna's claim of a queued trial (read WAITING,
    then write RUNNING; SQLite ignores SELECT ... FOR UPDATE) let two processes both read WAITING and both run the
    same trial: the later result then failed with "Cannot tell a COMPLETE trial" (seen in CI). BEGIN IMMEDIATE takes
    SQLite's write lock before the read, so one process claims the trial and the other sees it RUNNING
    (SQLAlchemy's pysqlite recipe)."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_study(url: str, name: str) -> optuna.Study:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sqlite = url.startswith("sqlite")
    # several writers wait for each other (60 s); pysqlite's implicit BEGIN is off: begin_immediate's instead
    engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else None
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            if sqlite:  # after Optuna's schema set-up, which reads on one connection while writing on another
                sqlalchemy.event.listen(storage.engine, "begin", begin_immediate)
            return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
        except sqlalchemy.exc.SQLAlchemyError:
            # Two processes creating a fresh database at once race in Optuna's schema set-up (both stamp its
            # version); the loser finds the tables made on its next try.
            if attempt == 4:
                raise
            time.sleep(1 + attempt)


def queue(study: optuna.Study, rates: list[float], default_rate: float) -> None:
    """Queue the rates no trial has yet (in any state), the default first (the others are judged against its
    rung scores): each is taken by exactly one process."""
    known = {t.user_attrs.get("rate") for t in study.get_trials(deepcopy=False)}
    for rate in sorted(rates, key=lambda r: r != default_rate):
        if rate not in known:
            enqueue(study, rate, default_rate)


def enqueue(study: optuna.Study, rate: float, default_rate: float) -> None:
    study.enqueue_trial({"learning_rate": rate}, user_attrs={"rate": rate, "default": rate == default_rate})


def work_through_queue(study: optuna.Study, objective) -> None:
    """Run queued trials until none is waiting, then wait for the ones other processes are running (a killed
    worker's trial is failed and its rate queued again: by Optuna's heartbeat, or requeue_abandoned)."""
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


def requeue_abandoned(study: optuna.Study) -> None:
    """Optuna's heartbeat misses a worker killed between taking a trial and its first heartbeat (the trial stays
    RUNNING forever), and waits out the grace period for a killed worker on this machine. A RUNNING trial is
    abandoned when its worker on this host is dead, or when it never named a worker (which a live process does
    within milliseconds of taking it) and began over GRACE_SECONDS ago: it is marked failed and its rate queued
    again, as Optuna's retry callback does."""
    host = socket.gethostname()
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is None:
            abandoned = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > GRACE_SECONDS
        else:
            where, _, pid = worker.rpartition(":")
            abandoned = where == host and not process_alive(int(pid))
        if abandoned and "rate" in t.user_attrs:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            study.enqueue_trial(
                {"learning_rate": t.user_attrs["rate"]},
                user_attrs={"rate": t.user_attrs["rate"], "default": t.user_attrs.get("default", False)},
            )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def make_objective(train_trial: Callable):
    def objective(trial: optuna.Trial) -> float:
        rate = trial.user_attrs.get("rate")
        if rate is None:  # Optuna drew a trial of its own: the queue emptied between our look and its pop
            trial.set_user_attr("not_run", "the queue was empty (another process took the last rate)")
            raise optuna.TrialPruned()
        taken = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.user_attrs.get("rate") == rate and t.number != trial.number]
        if taken:  # two processes queued the same extension at the same moment: run it once
            trial.set_user_attr("not_run", f"rate {rate:g} is already trial {taken[0].number}")
            raise optuna.TrialPruned()
        trial.suggest_float("learning_rate", 1e-8, 10.0, log=True)  # the queued rate, recorded as Optuna's param
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        start = time.perf_counter()
        try:
            result = train_trial(rate, trial)
        except optuna.TrialPruned:  # diverged, or behind the leader at a rung: the reason is in its attributes
            trial.set_user_attr("seconds", time.perf_counter() - start)
            raise
        except Exception as e:  # recorded with its reason, then Optuna marks it failed
            trial.set_user_attr("seconds", time.perf_counter() - start)
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            raise
        for key, value in result.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return result["rougeL"]
    return objective


STATUS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def trial_rows(study: optuna.Study) -> list[dict]:
    """Every trial that ran (or was interrupted), in the order they were created."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "rate" not in t.user_attrs or "not_run" in t.user_attrs or t.state == TrialState.WAITING:
            continue
        a = t.user_attrs
        status = "stopped" if "stopped" in a else STATUS[t.state]
        if t.state == TrialState.FAIL and "error" not in a:
            status = "interrupted"  # its worker stopped answering (killed): the rate was queued again
        rows.append({"number": t.number, "learning_rate": a["rate"], "default": bool(a.get("default")),
                     "status": status,
                     "validation": {"rougeL": t.value if t.state == TrialState.COMPLETE else None,
                                    "loss": a.get("loss")},
                     "rungs": [a[k] for k in sorted(k for k in a if k.startswith("rung_"))] + (
                         [{"step": a.get("steps"), "rougeL": t.value}] if t.state == TrialState.COMPLETE else []),
                     "steps": a.get("steps"), "seconds": a.get("seconds"), "tokens": a.get("tokens"),
                     "worker": a.get("worker"), **{k: a[k] for k in ("error", "pruned", "stopped") if k in a}})
    return rows


class SweepFailed(ConfigError):
    """No trial gave a usable model: the method fails, naming its trials and what to try."""


def usable_scores(rows: list[dict], floor: float) -> dict[float, float]:
    """Each rate's best validation ROUGE-L among its complete trials with a finite score above `floor` (the
    untrained model's): only those can be chosen."""
    score = {}
    for r in rows:
        value = r["validation"]["rougeL"]
        if r["status"] == "complete" and value is not None and math.isfinite(value) and value > floor:
            score[r["learning_rate"]] = max(score.get(r["learning_rate"], value), value)
    return score


def best_and_next(rows: list[dict], grid_step: dict[str, float], first: list[float],
                  floor: float = -math.inf) -> tuple[float | None, float | None]:
    """(the best usable rate so far or None, the rate to try next or None). The next rate is one grid step beyond
    the best when it sits at an edge of the rates tried (in any state), while fewer than MAX_EXTENSIONS steps were
    added. Ties go to the rate nearest the default."""
    score = usable_scores(rows, floor)
    if not score:
        return None, None
    tried = sorted({r["learning_rate"] for r in rows if r["status"] in ("complete", "stopped", "pruned", "failed")})
    best = max(score, key=lambda rate: (score[rate], -abs(math.log(rate / first[len(first) // 2]))))
    if len([r for r in tried if r not in first]) >= MAX_EXTENSIONS:
        return best, None
    if best == tried[0]:
        return best, float(f"{best / grid_step['down']:.6g}")
    if best == tried[-1]:
        return best, float(f"{best * grid_step['up']:.6g}")
    return best, None


def is_bracketed(rows: list[dict], best: float) -> bool:
    """The chosen rate has a measured trial at the next lower AND the next higher rate tried: complete, or stopped
    at a rung for being behind the leader there (measured worse); a diverged or failed neighbour does not bracket."""
    tried = sorted({r["learning_rate"] for r in rows if r["status"] in ("complete", "stopped", "pruned", "failed")})
    complete = {r["learning_rate"] for r in rows if r["status"] in ("complete", "stopped")}
    i = tried.index(best)
    return 0 < i < len(tried) - 1 and tried[i - 1] in complete and tried[i + 1] in complete


def default_if_complete(rows: list[dict], default_rate: float) -> float | None:
    """The preset rate when its trial ran to the end with a finite score (what a run without --sweep serves)."""
    return default_rate if default_rate in usable_scores(rows, -math.inf) else None


def failure(method: str, rows: list[dict], floor: float) -> SweepFailed:
    def said(r):
        if r["status"] == "complete":
            return f"{r['learning_rate']:g}: ROUGE-L {r['validation']['rougeL']:.3f}"
        return f"{r['learning_rate']:g}: {r['status']}"
    return SweepFailed(
        f"sweep {method}: no rate gave a usable model (validation ROUGE-L above the floor, "
        f"{floor:.3f}, the untrained model's unless --sweep_floor): "
        f"{'; '.join(said(r) for r in rows) or 'no trial finished'}. Try lower rates "
        "(--sweep_lr x1/30 x1/10 x1/3), a longer budget (--max_steps, --num_train_epochs), or --learning_rate "
        "without --sweep."
    )


def grid_steps(rates: list[float]) -> dict[str, float]:
    """How far an extension steps: the ratio of the grid's two outermost rates at that side (3 for one rate)."""
    if len(rates) < 2:
        return {"down": 3.0, "up": 3.0}
    return {"down": rates[1] / rates[0], "up": rates[-1] / rates[-2]}


def study_floor(cfg: TrainConfig, study: optuna.Study, untrained_rouge_l: Callable[[], float]) -> float:
    """What a trial must beat to be chosen: --sweep_floor as a number, else (untrained) the method's model before
    any training, scored once per study (kept in it: a resumed or second process reads it back)."""
    if cfg.sweep_floor != "untrained":
        return float(cfg.sweep_floor)
    if "floor" not in study.user_attrs:
        study.set_user_attr("floor", untrained_rouge_l())
    return study.user_attrs["floor"]


def run_sweep(cfg: TrainConfig, method, run_dir: Path, default_rate: float, steps: int,
              train_trial: Callable[[float, optuna.Trial], dict], untrained_rouge_l: Callable[[], float]) -> dict:
    """Sweep `method`'s rate (or read back the finished sweep) and write <run>/<method>/sweep.json.
    `train_trial(rate, trial)` trains the full `steps` at `rate` (stopping at a rung when behind, see Rungs),
    saves a complete trial's model and returns its validation figures;
    `untrained_rouge_l()` scores the method's untrained model: a rate must beat it (or --sweep_floor) to be
    chosen; when none does, the preset rate's complete trial is served (said), else SweepFailed."""
    start = time.perf_counter()
    first = parse_rates(cfg.sweep_lr, default_rate)
    url, name = storage_url(cfg, run_dir), study_name(cfg, method, steps)
    study = open_study(url, name)
    floor = study_floor(cfg, study, untrained_rouge_l)
    queue(study, first, default_rate)
    objective = make_objective(train_trial)
    while True:
        work_through_queue(study, objective)
        best, upcoming = best_and_next(trial_rows(study), grid_steps(first), first, floor)
        if upcoming is None:
            break
        print(f"sweep {method.name}: the best rate so far, {best:g}, is at the edge of the grid; trying {upcoming:g}.",
              flush=True)
        queue(study, [upcoming], default_rate)
    rows = trial_rows(study)
    below_floor = best is None
    if below_floor:  # nothing beat the untrained model: the preset's rate, as an untuned run serves it, or fail
        best = default_if_complete(rows, default_rate)
        if best is None:
            raise failure(method.name, rows, floor)
        print(f"sweep {method.name}: warning: no rate beat the untrained model's validation ROUGE-L ({floor:.3f}); "
              f"serving the preset rate {best:g}, as a run without --sweep would.", flush=True)
    tried = sorted({r["learning_rate"] for r in rows})
    bracketed = is_bracketed(rows, best)
    chosen = max((r for r in rows if r["learning_rate"] == best and r["status"] == "complete"),
                 key=lambda r: r["validation"]["rougeL"])
    doc = {"schema_version": 1, "method": method.name, "parameter": "learning_rate", "metric": "validation rougeL",
           "default_learning_rate": default_rate, "first_grid": first, "trials": rows,
           "chosen_learning_rate": best, "chosen_trial": chosen["number"], "bracketed": bracketed,
           "rungs": [*rung_steps(steps), steps],
           "untrained_validation_rougeL": floor, "below_untrained": below_floor,
           "note": f"no rate beat the untrained model ({floor:.3f}): the preset rate is served" if below_floor else
                   "" if bracketed else f"the best rate {best:g} has no complete trial on both sides among the rates "
                                        f"tried ({', '.join(f'{r:g}' for r in tried)}; the grid extends at most "
                                        f"{MAX_EXTENSIONS} times): a better one may lie beyond",
           "steps_per_trial": steps, "validation_dialogues": cfg.sweep_eval_dialogues,
           "seconds": sum(r["seconds"] or 0 for r in rows), "tokens": sum(r["tokens"] or 0 for r in rows),
           "wall_seconds_this_process": time.perf_counter() - start,
           "study": {"storage": url if url.startswith("sqlite") else url.split("@")[-1], "name": name}}
    write_run_file(run_dir, f"{method.name}/{SWEEP_JSON}", doc)
    print(f"sweep {method.name}: chose learning rate {best:g} of {', '.join(f'{r:g}' for r in tried)}"
          f"{'' if bracketed else ' (NOT bracketed: ' + doc['note'] + ')'}.", flush=True)
    return doc
