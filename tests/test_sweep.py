"""Learning-rate sweeps (training/sweep.py), seeds, and the evaluation over seeds, on small budgets."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from contract.files import EVAL_METRICS, read_evaluation, read_run_file
from scoring.stats import bootstrap_ci, bootstrap_ci_seeds, bootstrap_difference_seeds
from tests.helpers import ROOT
from training import evaluate, finetune, halving, sweep
from training.config import ConfigError
from training.methods import BUILTIN

SWEEP = ["--method", "lora", "--preset", "tiny", "--sweep", "lr", "--sweep_eval_dialogues", "6",
         "--max_train_samples", "32", "--max_eval_samples", "8", "--batch_size", "8", "--max_steps", "6",
         "--logging_steps", "1", "--eval_steps", "6", "--seeds", "2",
         "--sweep_floor", "0"]  # 8-step trials on 32 dialogues do not beat the untrained model: mechanics only


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """An uninterrupted sweep of LoRA (3 rates, extended while the best is at an edge), then two seeds."""
    run_dir = tmp_path_factory.mktemp("sweep") / "run"
    finetune.main([*SWEEP, "--output_dir", str(run_dir), "--tiny_pretrain_steps", "40"])
    return run_dir


def same_base(reference, run_dir):
    run_dir.mkdir(parents=True)
    shutil.copytree(reference / "base", run_dir / "base")
    shutil.copy(reference / "run.json", run_dir / "run.json")


def start(run_dir, *extra):
    cmd = [sys.executable, "-m", "training.finetune", *SWEEP, "--output_dir", str(run_dir), "--tiny_pretrain_steps",
           "40", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def trial_states(db) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as c:
            return [s for (s,) in c.execute("select state from trials")]
    except sqlite3.OperationalError:  # the tables are not created yet
        return []


def scored(doc) -> dict:
    """(rate, step) -> validation loss of every leg that finished."""
    return {(t["learning_rate"], leg["step"]): leg["loss"] for t in doc["trials"] for leg in t["legs"]
            if leg["status"] == "complete"}


LORA_RATE = BUILTIN["lora"].settings("tiny").learning_rate  # the default the sweep's grid is built around


@pytest.mark.slow
def test_sweep_halves_from_checkpoints_and_serves_the_continued_winner(swept):
    doc = read_run_file(swept, "lora/sweep.json")
    assert doc["rungs"] == [1, 2, 6] == [r["step"] for r in doc["rung_costs"]]  # 1/16, 1/4 (rounded) and the end
    assert doc["first_grid"] == pytest.approx([LORA_RATE / 3, LORA_RATE, 3 * LORA_RATE], rel=1e-5)
    legs = {(t["learning_rate"], leg["rung"]): leg for t in doc["trials"] for leg in t["legs"]}
    first, second, end = ([rate for rate, rung in legs if rung == i] for i in range(3))
    assert len(first) == len(doc["trials"]) >= 3 and len(second) == 2 and len(end) == 1  # halving: all, 2, 1
    assert all(legs[(rate, 0)]["from_step"] == 0 for rate in first)
    assert all(legs[(rate, 1)]["from_step"] == 1 for rate in second)  # continued from the first rung's checkpoint
    assert legs[(end[0], 2)]["from_step"] == 2 and end[0] in second
    trained = sum(leg["step"] - leg["from_step"] for leg in legs.values())
    assert doc["steps_trained"] == trained == sum(r["steps_trained"] for r in doc["rung_costs"])
    assert doc["steps_over_one_training"] == trained / 6 <= 1.5
    chosen = next(t for t in doc["trials"] if t["status"] == "complete")
    assert chosen["learning_rate"] == doc["chosen_learning_rate"] == end[0] and chosen["steps"] == 6
    assert all("continued:" in t["stopped"] for t in doc["trials"] if t is not chosen)
    default = next(t for t in doc["trials"] if t["default"])
    assert default["learning_rate"] == LORA_RATE
    for rung, survivors in ((0, second), (1, end)):  # the default kept its place unless beaten beyond noise
        if LORA_RATE not in survivors:
            assert all(halving.beats(legs[(rate, rung)]["scores"], legs[(LORA_RATE, rung)]["scores"])
                       for rate in survivors)
    assert doc["bracketed"] == halving.is_bracketed(
        {rate: legs[(rate, 0)]["scores"] for rate in first}, doc["chosen_learning_rate"])
    metrics = read_run_file(swept, "lora/metrics.json")
    assert metrics["learning_rate"] == {"value": doc["chosen_learning_rate"], "source": "sweep", "default": LORA_RATE,
                                        "bracketed": doc["bracketed"], "below_untrained": False}
    assert metrics["hyperparameters"]["learning_rate"] == doc["chosen_learning_rate"]
    assert metrics["final"]["steps"] == 6 and metrics["cost"]["segments"] == 3  # one training, in three legs
    assert metrics["cost"]["sweep_seconds"] == pytest.approx(doc["seconds"] - metrics["cost"]["train_seconds"])
    assert [s["seed"] for s in metrics["seeds"]] == [43] and metrics["seed"] == 42
    assert (swept / "lora" / "seeds" / "seed-43" / "adapter" / "adapter_model.safetensors").exists()
    assert (swept / "lora" / "adapter" / "adapter_model.safetensors").exists()
    assert not (swept / "lora" / sweep.TRIALS).exists()


@pytest.mark.slow
def test_the_served_winner_is_what_one_uninterrupted_training_at_its_rate_gives(swept, tmp_path):
    from safetensors.torch import load_file

    rate = read_run_file(swept, "lora/sweep.json")["chosen_learning_rate"]
    run_dir = tmp_path / "plain"
    same_base(swept, run_dir)
    plain = [a for a in SWEEP[:SWEEP.index("--seeds")] if a not in ("--sweep", "lr")]
    finetune.main([*plain, "--learning_rate", str(rate), "--output_dir", str(run_dir), "--tiny_pretrain_steps", "40"])
    served, uninterrupted = (load_file(d / "lora" / "adapter" / "adapter_model.safetensors") for d in (swept, run_dir))
    assert served.keys() == uninterrupted.keys()
    assert all((served[k] - uninterrupted[k]).abs().max() == 0 for k in served)  # bit-identical


def test_halving_runs_every_rate_to_the_first_rung_then_two_then_one():
    grid, steps = [1.0, 3.0, 9.0], halving.rung_steps(160)
    assert steps == [10, 40, 160]
    assert halving.plan({}, grid, 3.0, steps, 0).legs == [(1.0, 0), (3.0, 0), (9.0, 0)]
    noise = np.linspace(-0.05, 0.05, 20)
    finished = {(1.0, 0): 0.2 + noise, (3.0, 0): 0.3 + noise, (9.0, 0): 0.25 + noise}
    result = halving.plan(finished, grid, 3.0, steps, 0)
    assert result.legs[3:] == [(3.0, 1), (9.0, 1)] and not result.done
    assert result.stopped[1.0].startswith("at step 10: score 0.200; continued: 3 (score 0.300), 9 (score 0.250)")
    finished.update({(3.0, 1): 0.35 + noise, (9.0, 1): 0.34 + noise})
    result = halving.plan(finished, grid, 3.0, steps, 0)
    assert result.legs[-1] == (3.0, 2) and not result.done
    finished[(3.0, 2)] = list(0.4 + noise)
    result = halving.plan(finished, grid, 3.0, steps, 0)
    assert result.done and result.winner == 3.0 and not result.below_floor
    cost = sum(steps[rung] - (steps[rung - 1] if rung else 0) for _, rung in result.legs) / steps[-1]
    assert cost == pytest.approx(3 / 16 + 2 * 3 / 16 + 12 / 16) and cost <= 1.5


def test_the_default_keeps_its_place_unless_beaten_beyond_noise():
    rng = np.random.default_rng(0)
    default = rng.uniform(0.2, 0.4, 40)
    close = default + 0.005 + 0.05 * np.resize([1, -1], 40)  # ahead on average, within the dialogues' noise
    far = default + 0.05 + rng.normal(0, 0.01, 40)  # ahead on nearly every dialogue
    assert np.mean(close) > np.mean(default) and not halving.beats(close, default)
    assert halving.beats(far, default)
    assert halving.survivors({1.0: close, 3.0: default}, 3.0, 1) == [3.0]
    assert halving.survivors({1.0: far, 3.0: default}, 3.0, 1) == [1.0]
    assert halving.survivors({1.0: far, 3.0: default, 9.0: close}, 3.0, 2) == [3.0, 1.0]  # one beater: 2nd place
    assert halving.survivors({1.0: far, 3.0: default, 9.0: far + 0.01}, 3.0, 2) == [9.0, 1.0]
    assert halving.survivors({1.0: far, 3.0: default, 9.0: far + 0.01}, 3.0, 2, first_rung=True) == [3.0, 9.0]
    assert halving.survivors({1.0: close, 3.0: None}, 3.0, 1) == [1.0]  # a diverged default has no place


def test_the_grid_extends_toward_an_edge_at_most_twice_at_the_first_rung():
    grid, steps, flat = [1.0, 3.0, 9.0], [10, 40, 160], np.zeros(10)
    rising = {1.0: flat + .1, 3.0: flat + .2, 9.0: flat + .3}
    assert halving.extension(rising, grid, 3.0) == 27.0
    assert halving.extension({**rising, 1.0: flat + .4}, grid, 3.0) == pytest.approx(1 / 3)
    assert halving.extension({**rising, 27.0: flat + .4, 81.0: flat + .5}, grid, 3.0) is None  # two steps made
    assert halving.extension({**rising, 27.0: None}, grid, 3.0) is None  # the edge diverged: 9 is the best inside
    assert not halving.is_bracketed({**rising, 27.0: None}, 9.0) and halving.is_bracketed(rising, 3.0)
    finished = {(r, 0): s for r, s in rising.items()}
    result = halving.plan(finished, grid, 3.0, steps, 0)
    assert result.legs[3:] == [(27.0, 0)] and not result.done  # the extension before anyone continues
    finished[(27.0, 0)] = flat + .25
    # 9 and 27 lead the default by 0.1 and 0.05 on every dialogue: at the first rung the default continues anyway,
    # with the best challenger
    assert halving.plan(finished, grid, 3.0, steps, 0).legs[4:] == [(3.0, 1), (9.0, 1)]


def test_a_winner_under_the_floor_hands_the_end_to_the_default():
    grid, steps, flat = [1.0, 3.0, 9.0], [10, 40, 160], np.zeros(30)  # the default: 1.0
    finished = {(1.0, 0): flat + .1, (3.0, 0): flat + .3, (9.0, 0): flat + .1,
                (3.0, 1): flat + .4, (1.0, 1): flat + .1, (3.0, 2): flat + .05}
    result = halving.plan(finished, grid, 1.0, steps, floor=0.08)
    assert result.legs[-1] == (1.0, 2) and not result.done and "not above the floor" in result.stopped[3.0]
    finished[(1.0, 2)] = flat + .07
    result = halving.plan(finished, grid, 1.0, steps, floor=0.08)
    assert result.done and result.winner == 1.0 and result.below_floor
    nothing = {(r, 0): None for r in grid}
    assert halving.plan(nothing, grid, 3.0, steps, 0) == halving.Plan(
        legs=[(r, 0) for r in grid], done=True, winner=None, stopped={r: "at step 10: no score (diverged or failed)"
                                                                          for r in grid})


@pytest.mark.parametrize(
    "values, expected", [(["x1/3", "x1", "x3"], [1e-3, 3e-3, 9e-3]), (["1e-4", "x1"], [1e-4, 3e-3])]
)
def test_sweep_rates_are_factors_or_rates(values, expected):
    assert sweep.parse_rates(values, 3e-3) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["x", "fast", "-1e-3", "x0"])
def test_a_bad_sweep_rate_is_refused_by_name(value):
    with pytest.raises(ConfigError, match="--sweep_lr"):
        sweep.parse_rates([value], 1e-3)


def test_a_fixed_rate_and_a_sweep_contradict(tmp_path):
    with pytest.raises(SystemExit):
        finetune.main([*SWEEP, "--output_dir", str(tmp_path / "r"), "--learning_rate", "1e-3"])


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_keeps_finished_trials_and_chooses_the_same_rate(swept, tmp_path):
    run_dir = tmp_path / "killed"
    same_base(swept, run_dir)
    db = run_dir / sweep.STUDY_FILE
    proc = start(run_dir)
    while proc.poll() is None:  # kill it while a leg runs, after at least one finished
        states = trial_states(db)
        if "COMPLETE" in states and "RUNNING" in states:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed mid-leg"
    done_before = trial_states(db).count("COMPLETE")
    resumed = start(run_dir, "--resume")
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log[-3000:]
    doc, reference = read_run_file(run_dir, "lora/sweep.json"), read_run_file(swept, "lora/sweep.json")
    killed_pid = f":{proc.pid}"
    legs = [leg for t in doc["trials"] for leg in t["legs"]]
    kept = [leg for leg in legs if leg["status"] == "complete" and leg["worker"].endswith(killed_pid)]
    assert len(kept) == done_before >= 1  # finished legs were read back, not trained again
    assert any(leg["status"] == "interrupted" for leg in legs)
    assert len(scored(doc)) == len([leg for leg in legs if leg["status"] == "complete"])  # no leg twice
    assert scored(doc) == pytest.approx(scored(reference))  # each leg's score as in the uninterrupted sweep
    assert doc["chosen_learning_rate"] == reference["chosen_learning_rate"]
    from safetensors.torch import load_file

    served, uninterrupted = (load_file(d / "lora" / "adapter" / "adapter_model.safetensors") for d in (run_dir, swept))
    assert all((served[k] - uninterrupted[k]).abs().max() == 0 for k in served)  # the same served weights


@pytest.mark.slow
def test_two_processes_share_one_sweep_through_its_storage(swept, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        same_base(swept, folder)
    procs = [start(folder, "--sweep_storage", storage) for folder in folders]
    for proc in procs:
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, log[-3000:]
    reference = read_run_file(swept, "lora/sweep.json")
    docs = [read_run_file(folder, "lora/sweep.json") for folder in folders]
    complete = [(t["learning_rate"], leg["rung"], leg["worker"]) for t in docs[0]["trials"] for leg in t["legs"]
                if leg["status"] == "complete"]
    assert len(complete) == len({leg[:2] for leg in complete}) == len(scored(reference))  # no leg run twice
    assert docs[0]["trials"] == docs[1]["trials"]  # one study: both processes read the same legs
    assert scored(docs[0]) == pytest.approx(scored(reference))
    assert docs[0]["chosen_learning_rate"] == docs[1]["chosen_learning_rate"] == reference["chosen_learning_rate"]
    assert not (folders[0] / sweep.STUDY_FILE).exists()  # the shared storage held it
    print("workers:", sorted({worker for *_, worker in complete}))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() rather than optimize(): the claim alone
def test_two_processes_never_claim_the_same_queued_trial_in_sqlite(tmp_path, monkeypatch):
    """Optuna claims a queued trial by reading it WAITING, then writing RUNNING. Both claims are made to read before
    either writes (a barrier after the read, given up after 3 s): with SQLite's write lock taken before the read
    (begin_immediate) the second claim waits, sees the trial RUNNING and asks for a new one; without it both
    processes ran the same trial, and the later result failed ("Cannot tell a COMPLETE trial")."""
    import threading

    from optuna.storages._rdb.models import TrialModel

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    studies = [sweep.open_study(url, "claims"), sweep.open_study(url, "claims")]
    sweep.enqueue(studies[0], 0.01, 0, default=True)
    barrier = threading.Barrier(2, timeout=3)
    read = TrialModel.find_or_raise_by_id.__func__

    def read_then_wait(cls, trial_id, session, for_update=False):
        trial = read(cls, trial_id, session, for_update)
        if for_update:  # the claim's read (set_trial_state_values)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return trial

    monkeypatch.setattr(TrialModel, "find_or_raise_by_id", classmethod(read_then_wait))
    asked = [None, None]
    threads = [threading.Thread(target=lambda i=i: asked.__setitem__(i, studies[i].ask())) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    queued = [t.user_attrs.get("rate") for t in asked]
    assert sorted(t.number for t in asked) == [0, 1], "both processes claimed the same queued trial"
    assert queued.count(0.01) == 1, queued


def test_two_level_bootstrap_holds_seed_variation():
    rng = np.random.default_rng(1)
    dialogues = rng.uniform(0.2, 0.6, 60)
    assert bootstrap_ci_seeds([dialogues], resamples=1000) == bootstrap_ci(dialogues, resamples=1000)
    seeds = np.stack([dialogues - 0.1, dialogues, dialogues + 0.1])  # seeds that disagree by a constant
    mean, low, high = bootstrap_ci_seeds(seeds, resamples=2000)
    _, low1, high1 = bootstrap_ci(dialogues, resamples=2000)
    assert mean == pytest.approx(dialogues.mean()) and high - low > 1.5 * (high1 - low1)


def test_difference_of_two_trainings_holds_both_seed_sets():
    rng = np.random.default_rng(2)
    dialogues = rng.uniform(0.2, 0.6, 60)
    preset = np.stack([dialogues - 0.05, dialogues, dialogues + 0.05])
    diff, low, high = bootstrap_difference_seeds(preset, preset + 0.1, resamples=2000)
    assert diff == pytest.approx(0.1) and 0 < low < 0.1 < high
    diff, low, high = bootstrap_difference_seeds(preset, preset, resamples=2000)
    assert diff == pytest.approx(0) and low < 0 < high  # each run's seeds drawn on their own: not a zero-width CI
    diff, low, high = bootstrap_difference_seeds(preset, preset[1:2] - 0.1, resamples=2000)
    assert diff == pytest.approx(-0.1) and high < 0  # worse beyond the interval


@pytest.mark.slow
def test_evaluation_reports_each_seed_and_tests_on_the_mean_over_seeds(swept):
    evaluate.run(evaluate.EvalConfig(run=str(swept), limit=6, batch_size=6, max_new_tokens=16))
    metrics, rows = read_evaluation(swept)
    lora = metrics["scores"]["per_row"]["lora"]["rouge1"]
    assert set(lora["seeds"]) == {"42", "43"} and metrics["seeds"]["lora"] == {"served": 42, "all": [42, 43]}
    assert lora["mean"] == pytest.approx(np.mean(list(lora["seeds"].values())))
    assert lora["ci_low"] <= lora["mean"] <= lora["ci_high"]
    served = np.average([r["rouge"]["lora"]["rouge1"] for r in rows], weights=[len(r["references"]) for r in rows])
    assert served == pytest.approx(lora["seeds"]["42"])  # predictions.jsonl holds the served seed's summaries
    assert all(set(r["seed_outputs"]["lora"]) == {"43"} for r in rows)
    pair = next(c for c in metrics["comparisons"]["per_row"] if {c["a"], c["b"]} == {"base", "lora"}
                and c["metric"] == "rouge1")
    base = metrics["scores"]["per_row"]["base"]["rouge1"]["mean"]
    assert pair["mean_difference"] == pytest.approx(base - lora["mean"])  # paired on the mean over seeds
    assert "seeds" not in metrics["scores"]["per_row"]["base"]["rouge1"]
    assert json.loads((swept / EVAL_METRICS).read_text())["bootstrap"]["unit"] == "seed, then dialogue"


@pytest.mark.slow
def test_dashboard_shows_the_sweep_the_seeds_and_both_costs(swept):
    from dashboard import figures, frames, metrics_tab
    from dashboard import run_data as rd

    if not (swept / EVAL_METRICS).exists():
        evaluate.run(evaluate.EvalConfig(run=str(swept), limit=6, batch_size=6, max_new_tokens=16))
    data = rd.load_run(swept)
    doc = data.sweeps["lora"]
    tuning = frames.tuning_frame(data)
    assert len(tuning) == len(scored(doc)) and set(tuning["step"]) == set(doc["rungs"])  # a row per scored leg
    assert set(tuning[tuning["chosen"]]["learning_rate"]) == {doc["chosen_learning_rate"]}
    fig = figures.tuning_chart(tuning, data.labels)
    star = next(t for t in fig.data if t.marker.symbol == "star")
    assert list(star.x) == [doc["chosen_learning_rate"]] and fig.layout.xaxis.type == "log"
    bars = figures.rouge_bars(frames.rouge_frame(data.evaluation), data.labels)
    dots = [t for t in bars.data if t.name == "each seed"]
    assert len(dots) == 1 and len(dots[0].y) == 2 * 4  # lora's two seeds on each of the four metrics
    once, swept_too = frames.tradeoff_frame(data), frames.tradeoff_frame(data, with_sweep=True)
    lora = lambda f: f.set_index("method").loc["lora", "train_seconds"]  # noqa: E731
    served = data.train["lora"]["cost"]["train_seconds"]
    assert lora(swept_too) - lora(once) == pytest.approx(doc["seconds"] - served)  # the legs beyond one training
    assert frames.cost_frame(data.train, True).set_index("method").loc["lora", "train_seconds"] == pytest.approx(
        lora(swept_too))
    table = frames.summary_table(data).set_index("model")
    assert "swept" in table.loc[data.label("lora"), "learning rate"] and table.loc[data.label("lora"), "seeds"] == 2
    text = metrics_tab.protocol_line(data)
    assert "swept on the validation split" in text and "Seeds: 2 per method" in text


@pytest.mark.slow
def test_a_sweep_with_no_usable_trial_fails_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.finetune", "--method", "lora", "--preset", "tiny", "--sweep", "lr",
           "--sweep_lr", "1e2", "1e3", "1e4", "--max_steps", "4", "--sweep_eval_dialogues", "4",
           "--max_train_samples", "16", "--max_eval_samples", "8", "--batch_size", "8", "--logging_steps", "1",
           "--tiny_pretrain_steps", "40", "--output_dir", str(run_dir)]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (
        last.startswith("error: sweep lora: no rate gave a usable model") and "100:" in last and "--sweep_lr" in last
    )
    assert "untrained model's" in last
    assert not (run_dir / "lora" / "metrics.json").exists() and not (run_dir / "lora" / "adapter").exists()


@pytest.mark.slow
def test_when_no_rate_beats_the_untrained_model_the_preset_rate_is_served_and_said(tmp_path, capsys):
    run_dir = tmp_path / "run"
    seeds, floor = SWEEP.index("--seeds"), SWEEP.index("--sweep_floor")
    finetune.main([*SWEEP[:seeds], *SWEEP[seeds + 2:floor], "--sweep_floor", "1", "--output_dir", str(run_dir),
                   "--tiny_pretrain_steps", "40"])  # one seed, and a floor no ROUGE-L can exceed
    doc = read_run_file(run_dir, "lora/sweep.json")
    metrics = read_run_file(run_dir, "lora/metrics.json")
    assert doc["below_untrained"] and doc["chosen_learning_rate"] == doc["default_learning_rate"]
    assert "the preset rate is served" in doc["note"]
    assert (
        metrics["learning_rate"]["value"] == doc["default_learning_rate"]
        and metrics["learning_rate"]["below_untrained"]
    )
    assert "no rate beat the untrained model" in capsys.readouterr().out
