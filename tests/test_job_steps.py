"""A comparison's jobs, step by step (training/jobs.py, training/worker.py): the plan of what each job needs, a
method's seeds as jobs of their own, each model's summaries as a shard, a job whose need failed, a job on several
devices under torchrun. Kept apart from tests/test_jobs.py so the suite's two workers share the slow ones."""

import json
import shutil
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.test_jobs import same_base, train, trial
from training import jobs


def test_the_plan_gives_the_sweep_each_seed_and_the_served_model_jobs_of_their_own():
    from training.config import SweepSettings, TrainConfig
    from training.methods import BUILTIN

    methods = [BUILTIN["full"], BUILTIN["lora"]]
    plan = jobs.comparison_plan(TrainConfig(preset="tiny", sweep=SweepSettings(over="lr"), seeds=3, seed=5), methods)
    assert plan["tune:lora"] == ["base"]
    assert plan["seed:lora:6"] == plan["seed:lora:7"] == ["tune:lora"]  # side by side, once the rate is known
    assert plan["train:lora"] == ["tune:lora", "seed:lora:6", "seed:lora:7"]
    assert plan[jobs.evaluate_key(methods)][:2] == ["train:full", "train:lora"]
    plain = jobs.comparison_plan(TrainConfig(preset="tiny"), methods)
    assert set(plain) == {"base", "train:full", "train:lora", "generate:base", "generate:full", "generate:lora",
                          jobs.evaluate_key(methods)}
    assert plain["generate:lora"] == ["train:lora"] and plain["generate:base"] == ["base"]  # each model's summaries
    assert {"generate:base", "generate:full", "generate:lora"} <= set(plain[jobs.evaluate_key(methods)])
    blocks = jobs.comparison_plan(TrainConfig(preset="tiny"), methods, blocks=2)  # a large test set
    assert blocks["generate:lora:0"] == blocks["generate:lora:1"] == ["train:lora"]
    assert {"generate:base:0", "generate:base:1", "generate:lora:1"} <= set(blocks[jobs.evaluate_key(methods)])
    assert "generate:lora" not in blocks


SWEEP = ["--sweep", "lr", "--sweep_floor", "0", "--sweep_eval_dialogues", "4"]  # mechanics, not quality


@pytest.mark.slow
def test_a_methods_sweep_legs_seeds_and_summary_blocks_as_jobs_give_the_results_of_one_process(tmp_path):
    """--sweep lr --seeds 3 with two workers: while legs wait in the method's sweep, `legs:` jobs take them beside
    its tune job; its seeds train side by side once the rate is known; each model's summaries are two jobs (20 test
    dialogues, 8 a job: rounded to one generation batch of 16, then 4). The legs, the chosen rate, the weights of
    every seed, the scores and each seed's summary are those of one process."""
    import optuna
    from safetensors.torch import load_file

    one = tmp_path / "one"
    done = train(one, *SWEEP, "--seeds", "3", "--serving_dialogues", "0", methods=["lora"], max_steps=48,
                 eval_limit=20)
    assert done.returncode == 0, done.stderr[-2000:]
    queued = same_base(one, tmp_path / "queued")
    done = train(queued, *SWEEP, "--seeds", "3", "--serving_dialogues", "0", "--workers", "2", "--dialogues_per_job",
                 "8", methods=["lora"], max_steps=48, eval_limit=20)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 running, 0 waiting, 0 failed" in done.stdout and "legs:lora:1" in done.stdout  # a helper ran
    assert "summaries of the test dialogues (block 1)" in done.stdout
    assert "lora's summaries come from its shards (.eval_shards/lora/) with their scores" in done.stdout
    assert not (queued / ".eval_shards").exists()  # read into the evaluation, then removed
    sweeps = [json.loads((run / "lora" / "sweep.json").read_text()) for run in (one, queued)]
    legs = [sorted((t["learning_rate"], leg["step"], leg["loss"]) for t in doc["trials"] for leg in t["legs"])
            for doc in sweeps]
    assert legs[0] == legs[1] and len(legs[0]) >= 6  # 3 rates, 2 continue, 1 to the end
    assert sweeps[0]["chosen_learning_rate"] == sweeps[1]["chosen_learning_rate"]
    storage = f"sqlite:///{queued / 'sweep.sqlite3'}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) == 2  # legs on both
    for folder in ("adapter", "seeds/seed-43/adapter", "seeds/seed-44/adapter"):
        a, b = (load_file(run / "lora" / folder / "adapter_model.safetensors") for run in (one, queued))
        assert all((a[k] == b[k]).all() for k in a), folder
    seeds = [[(s["seed"], s["final"]) for s in json.loads((run / "lora" / "metrics.json").read_text())["seeds"]]
             for run in (one, queued)]
    assert seeds[0] == seeds[1] and len(seeds[0]) == 2
    scores = [json.loads((run / "eval" / "metrics.json").read_text())["scores"] for run in (one, queued)]
    assert scores[0] == scores[1]
    rows = [(run / "eval" / "predictions.jsonl").read_text() for run in (one, queued)]
    assert rows[0] == rows[1]  # every summary and its per-dialogue scores (scored by the shards' jobs here)


def test_a_job_whose_need_failed_for_good_is_named_not_run(tmp_path):
    import optuna

    from training.config import SweepSettings, TrainConfig
    from training.methods import BUILTIN

    cfg = TrainConfig(preset="tiny", sweep=SweepSettings(over="lr"), seeds=2, output_dir=str(tmp_path / "run"))
    comparison = jobs.Comparison(cfg, [BUILTIN["lora"]], workers=0)
    comparison.study = optuna.create_study()
    comparison.plan = jobs.comparison_plan(cfg, comparison.methods)  # as the base's job would let it make
    for key, state, extra in (("base", TrialState.COMPLETE, {}), ("tune:lora", TrialState.FAIL, {"error": "E: a"}),
                              ("tune:lora", TrialState.FAIL, {"error": "E: b"}),
                              ("generate:base", TrialState.COMPLETE, {})):
        comparison.study.add_trial(trial(key, state, **extra))
    states = comparison.step()
    assert states["tune:lora"].state == "failed"
    assert states["seed:lora:43"].state == "failed" and states["seed:lora:43"].error == "not run: tune:lora failed"
    assert states["train:lora"].error == "not run: tune:lora failed"
    assert states["generate:lora"].error == "not run: train:lora failed"
    evaluation = jobs.evaluate_key([BUILTIN["lora"]])
    assert states[evaluation].state == "waiting"  # the evaluation scores whatever trained (here: the base)
    assert not [t for t in comparison.study.trials if t.user_attrs["job"].startswith(("seed", "train", "generate:l"))]


@pytest.mark.slow
def test_a_job_on_two_devices_trains_under_torchrun(tmp_path):
    """--devices_per_job 2 on a CPU: the method's job runs as two processes over gloo (DDP through the Trainer),
    its seeds inside it, and the comparison is evaluated as usual."""
    run = tmp_path / "run"
    done = train(run, "--workers", "1", "--devices_per_job", "2", "--seeds", "2", "--serving_dialogues", "0",
                 methods=["lora"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "jobs: 5 done, 0 running, 0 waiting, 0 failed" in done.stdout  # base, lora (and its seed), 2 shards, eval
    metrics = json.loads((run / "lora" / "metrics.json").read_text())
    assert metrics["cost"]["world_size"] == 2 and [s["seed"] for s in metrics["seeds"]] == [43]
    assert "lora" in json.loads((run / "eval" / "metrics.json").read_text())["scores"]["per_row"]


def test_a_methods_training_command_carries_the_comparisons_settings():
    from training.config import QueueSettings, TrainConfig
    from training.methods import resolve_methods
    from training.worker import finetune_arguments

    cfg = TrainConfig(preset="tiny", methods="lora,mine", method_config=["mine=/x/c.json"], seeds=3, max_steps=8,
                      queue=QueueSettings(workers=2, devices_per_job=2), output_dir="ignored")
    lora, mine = resolve_methods("lora", []) + [None]
    arguments = finetune_arguments(cfg, lora, Path("/runs/r"))
    assert arguments[:6] == ["--output_dir", "/runs/r", "--resume", "true", "--method", "lora"]
    assert {"--preset", "tiny", "--seeds", "3", "--max_steps", "8"} <= set(arguments)
    assert "--workers" not in arguments and "--devices_per_job" not in arguments and "--methods" not in arguments


def test_blocks_of_summaries_are_those_of_one_pass_and_read_only_while_they_match(evaluated_run, tmp_path):
    """generate:<model>:<block> jobs write a model's summaries block by block (whole generation batches of the
    length order): put together they are the summaries of one pass; a missing block, or a block of other weights
    or another decoding, is never read (the evaluation generates the model's summaries again)."""
    from contract.loading import load_run_models
    from scoring.rouge import load_rouge_metric, model_scores
    from training import evaluate, shards
    from training.generation import generate

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run, ignore=shutil.ignore_patterns("*.sqlite*", ".int8"))
    cfg = evaluate.EvalConfig(run=str(run), limit=10, batch_size=2, max_new_tokens=8)
    blocks = shards.block_count(10, 3, cfg.batch_size)  # 3 dialogues a job: 4 (two whole batches), 4, 2
    for block in range(blocks):
        evaluate.generate_shard(cfg, "lora", block, dialogues_per_job=3)
    written = [json.loads(shards.shard_path(run, "lora", b).read_text()) for b in range(blocks)]
    assert [len(w["indices"]) for w in written] == [4, 4, 2]
    assert sorted(i for w in written for i in w["indices"]) == list(range(10))
    loaded = load_run_models(run, only=["lora"])
    prompts = [evaluate.format_prompt(d, cfg.prompt_template)
               for d in evaluate.test_dialogues(cfg, json.loads((run / "run.json").read_text()))["dialogue"]]
    keys = evaluate.shard_keys(run, loaded, "lora", cfg)
    references = [list(r) for r in evaluate.test_dialogues(cfg, json.loads((run / "run.json").read_text()))[
        "references"]]
    joined = shards.read_shards(run, "lora", prompts, keys, references)
    one_pass = generate(loaded.model_for("lora"), loaded.tokenizer, prompts, cfg.batch_size, cfg.max_new_tokens,
                        cfg.max_source_length)
    assert joined["outputs"] == one_pass
    served = str(json.loads((run / "lora" / "metrics.json").read_text())["seed"])
    assert joined["scores"] == {served: model_scores(references, one_pass, load_rouge_metric())}  # as if scored whole
    assert shards.read_shards(run, "lora", prompts, keys, references[::-1])["scores"] is None  # other references
    assert joined["cost"]["seconds"] == pytest.approx(sum(w["cost"]["seconds"] for w in written))
    other_decoding = evaluate.shard_keys(run, loaded, "lora", evaluate.EvalConfig(run=str(run), limit=10))
    assert shards.read_shards(run, "lora", prompts, other_decoding, references) is None
    config = run / "lora" / "adapter" / "adapter_config.json"
    config.write_text(config.read_text() + "\n")  # other adapter files: other weights as far as the key knows
    assert shards.read_shards(run, "lora", prompts, evaluate.shard_keys(run, loaded, "lora", cfg), references) is None
    shards.shard_path(run, "lora", 1).unlink()
    assert shards.read_shards(run, "lora", prompts, keys, references) is None  # a block missing
