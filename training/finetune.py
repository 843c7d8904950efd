"""The fine-tuning recipe, one for every method: full fine-tuning trains every weight; a peft method (LoRA, DoRA,
IA³, prompt/prefix tuning, QLoRA, your own adapter_config.json) freezes the base and trains only its few
parameters. Which method is data (training/methods.py); what differs here is only how the model is built and
saved, chosen by the method's kind.

    python -m training.finetune --preset tiny --method full               # offline, 2 CPU cores, about a minute
    python -m training.finetune --preset tiny --method ia3
    python -m training.finetune --preset tiny --method_config lora_r4_qk=my/adapter_config.json
    python -m training.finetune --preset flan-t5-base --method lora --learning_rate 5e-4
    python -m training.finetune --preset tiny --method ia3 --sweep lr --seeds 3   # its best rate, three seeds
    torchrun --nproc_per_node=2 -m training.finetune --preset flan-t5-base --method full   # DDP through the Trainer

Writes <run>/<method>/model (full: checkpoint + tokenizer, loadable on its own) or <run>/<method>/adapter
(adapter_config.json + adapter_model.safetensors), then <run>/<method>/metrics.json last; with --sweep lr first
<run>/<method>/sweep.json, with --seeds K the other seeds in <run>/<method>/seeds/seed-N/. `--resume` continues
from the newest complete checkpoint (any kill, at any moment: see the README).
"""

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import set_seed

from contract.files import (
    ADAPTER,
    METHOD_METRICS,
    MODEL,
    SEEDS,
    SWEEP_JSON,
    method_metrics,
    read_json,
    save_folder_atomically,
    schema_for,
)
from contract.loading import nf4_quantization
from training import halving, sweep
from training.cli import run_cli
from training.config import ConfigError, TrainConfig, parse_config, resolve
from training.data import LoadedData
from training.methods import Method, resolve_methods
from training.modeling import count_parameters, load_base_model, load_tokenizer
from training.preflight import check_adapter_size, check_run
from training.run_folder import (
    CHECKPOINTS,
    check_output_folder,
    checkpoint_step,
    finish,
    newest_complete_checkpoint,
    one_writer,
    set_up_run,
)
from training.trainer import (
    PauseAt,
    TokenizedSplit,
    fit,
    make_trainer,
    optimizer_steps,
    tokenize,
    trainer_arguments,
    training_metrics,
)


def build_model(method: Method, cfg: TrainConfig, run_dir: Path, total_steps: int):
    """The model the Trainer trains: the base itself (full), or the base wrapped by the method's peft config.
    An adapter with more trainable parameters than the whole base is refused unless --allow_large_adapter."""
    if method.kind == "full":
        return load_base_model(cfg, run_dir)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method.quantize_4bit:
        base = prepare_model_for_kbit_training(load_base_model(cfg, run_dir, nf4_quantization()))
    else:
        base = load_base_model(cfg, run_dir)
    base_size = count_parameters(base)["total"]
    model = get_peft_model(base, method.peft_config(base.config, total_steps))  # wraps (and mutates) the base
    check_adapter_size(method, count_parameters(model)["trainable"], base_size, cfg.allow_large_adapter)
    return model


def save_weights(method: Method, trainer, model, out: Path) -> Path:
    """<method>/model (full: model + tokenizer) or <method>/adapter (peft), complete or absent."""
    folder = out / (MODEL if method.kind == "full" else ADAPTER)

    def save(tmp):
        if method.kind == "full":
            trainer.save_model(str(tmp))  # model + tokenizer (processing_class), safetensors
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config lives in metrics.json
        else:
            model.save_pretrained(str(tmp))  # adapter_config.json + adapter_model.safetensors
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template

    save_folder_atomically(folder, save)
    return folder


@dataclass
class MethodData:
    """What every training of one method shares (sweep trials, seeds, the served model): data and tokens."""
    data: LoadedData
    tokenizer: object
    train: TokenizedSplit
    evalset: TokenizedSplit


def load_method_data(cfg: TrainConfig, out: Path) -> MethodData:
    data = set_up_run(cfg, trainer_arguments(cfg, out))
    tokenizer = load_tokenizer(cfg, Path(cfg.output_dir))
    return MethodData(data, tokenizer, tokenize(data.splits["train"], tokenizer, cfg),
                    tokenize(data.splits["validation"], tokenizer, cfg))


def build_base(cfg: TrainConfig, method: Method) -> None:
    """The run's base (the tiny one built and copy-pretrained) and run.json, as the first method's training would
    make them: a comparison's coordinator does it once, before any worker starts."""
    cfg = resolve(cfg, method.settings(cfg.preset))
    with one_writer(Path(cfg.output_dir)):
        set_up_run(cfg, trainer_arguments(cfg, Path(cfg.output_dir) / method.name))


class MethodTraining:
    """One method's training in its run, as steps on one object: setup (its folder, data and tokens), tune
    (--sweep lr: its learning rate), seeds (those beyond the served one, at that rate), serve (the served model,
    whose metrics.json, written last, marks the method complete). `run()` takes them in order in this process; the
    job queue (training/jobs.py) gives the tuning, each seed and the served model to workers as jobs of their own."""

    def __init__(self, cfg: TrainConfig, method: Method, callbacks=()):
        rate_source = "command line" if cfg.learning_rate is not None else "preset"
        self.cfg = resolve(cfg, method.settings(cfg.preset))
        self.method, self.callbacks = method, callbacks
        self.run_dir = Path(self.cfg.output_dir)
        self.rate = {"value": self.cfg.learning_rate, "source": rate_source}
        self.sweep_seconds, self.best_trial = None, None

    def run(self) -> Path:
        with one_writer(self.run_dir):
            self.setup()
            self.tune()
            self.serve()
        return self.run_dir

    def setup(self) -> None:
        self.out, self.resume_from = check_output_folder(self.cfg, self.method.name)
        self.method_data = load_method_data(self.cfg, self.out)

    def tune(self, read_back: bool = False) -> None:
        """--sweep lr: the sweep's rate becomes the rate (`read_back`: from a finished sweep's sweep.json, as a
        seed's job reads it while other seeds' jobs read it too)."""
        if not self.cfg.sweep.over:
            return
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("--sweep trains its trials in one process: instead of torchrun, start one process "
                              "per GPU (CUDA_VISIBLE_DEVICES=N) with the same --sweep_storage; they share the "
                              "trials.")
        finished = self.out / SWEEP_JSON
        if read_back and finished.exists():
            doc = read_json(finished, schema_for(f"{self.method.name}/{SWEEP_JSON}"))
        else:
            doc = tune(self.cfg, self.method, self.method_data, self.out)
        self.cfg = dataclasses.replace(self.cfg, learning_rate=doc["chosen_learning_rate"])
        self.rate = {"value": self.cfg.learning_rate, "source": "sweep", "default": doc["default_learning_rate"],
                     "bracketed": doc["bracketed"], "below_untrained": doc.get("below_untrained", False)}
        self.best_trial = self.out / sweep.TRIALS / sweep.trial_folder(self.cfg.learning_rate)
        self.sweep_seconds = doc["seconds"]

    def sweep_study(self) -> tuple[str, str]:
        """(storage URL, study name) of the method's sweep: where its legs wait to be taken."""
        steps = sweep_steps(self.cfg, self.method_data)
        return sweep.storage_url(self.cfg, self.run_dir), sweep.study_name(self.cfg, self.method, steps)

    def take_waiting_legs(self) -> None:
        """Help the method's sweep (its tune step runs in another process): train the legs waiting in its queue
        until none waits."""
        url, name = self.sweep_study()
        rungs = halving.rung_steps(sweep_steps(self.cfg, self.method_data))
        run_leg = leg_runner(self.cfg, self.method, self.method_data, self.out)
        sweep.take_waiting_legs(sweep.open_study(url, name), run_leg, rungs)

    def extra_seeds(self) -> list[int]:
        return list(range(self.cfg.seed + 1, self.cfg.seed + self.cfg.seeds))

    def train_seeds(self, seeds: list[int]) -> list[dict]:
        """Each seed's summary for metrics.json: trained now, or read back when it is complete."""
        return [train_extra_seed(dataclasses.replace(self.cfg, seed=s), self.method, self.out, self.method_data)
                for s in seeds]

    def serve(self) -> None:
        """Every extra seed (complete ones read back), then the served model: the sweep's best trial moved into
        place, or trained at the rate."""
        rate_and_seeds = {"learning_rate": self.rate, "seeds": self.train_seeds(self.extra_seeds())}
        if self.best_trial is not None and (self.best_trial / METHOD_METRICS).exists():
            promote_best_trial(self.method, self.best_trial, self.out, rate_and_seeds, self.sweep_seconds)
        else:  # no sweep, or its winner ran on another machine (a shared --sweep_storage): train at the rate
            if self.cfg.resume and self.resume_from is None and (self.out / CHECKPOINTS).exists():
                print(f"--resume: {self.method.name}: no complete checkpoint of the served model; it trains from "
                      "step 0 (its finished sweep legs and seeds are kept).", flush=True)
            cost = {} if self.sweep_seconds is None else {"sweep_seconds": self.sweep_seconds}
            train(self.cfg, self.method, self.out, self.resume_from, self.method_data, self.callbacks,
                  recorded=rate_and_seeds, cost=cost)
        shutil.rmtree(self.out / sweep.TRIALS, ignore_errors=True)


def run(cfg: TrainConfig, method: Method, callbacks=()) -> Path:
    """Train `method` into its folder of the run: its sweep first (--sweep lr: the best trial becomes the served
    model), then each extra seed (--seeds), then the served model (--seed), whose metrics.json, written last,
    marks the method complete."""
    return MethodTraining(cfg, method, callbacks).run()


def sweep_steps(cfg: TrainConfig, method_data: MethodData) -> int:
    """The full budget's optimizer steps in one process: where a sweep's last rung ends."""
    return optimizer_steps(cfg, len(method_data.train.dataset), 1)


def leg_runner(cfg: TrainConfig, method: Method, method_data: MethodData, out: Path):
    """`run_leg(rate, step, trial)` for training/sweep.py: trains a rate here, in <method>/trials/lr-<rate>/, from
    its newest complete checkpoint to the leg's step, and scores it there."""
    steps = sweep_steps(cfg, method_data)
    validation = method_data.data.splits["validation"]

    def run_leg(rate: float, step: int, trial) -> dict:
        folder = out / sweep.TRIALS / sweep.trial_folder(rate)
        resume_from = newest_complete_checkpoint(folder / CHECKPOINTS)
        from_step = checkpoint_step(resume_from)
        if from_step > step:  # a later leg's checkpoint, yet this leg is not finished: start the rate over
            shutil.rmtree(folder)
            resume_from, from_step = None, 0
        leg_cfg = dataclasses.replace(cfg, learning_rate=rate)
        callbacks = [sweep.PruneDiverged(trial)]
        if step == steps:  # the end: the rate's model and metrics.json, as a run without --sweep writes them
            model = train(leg_cfg, method, folder, resume_from, method_data, callbacks)
        else:
            model = train_until(leg_cfg, method, folder, resume_from, method_data, step, callbacks)
        losses = sweep.validation_losses(model, method_data.tokenizer, method_data.evalset.dataset, leg_cfg)
        leg = {"from_step": from_step, "step": step, "loss": float(np.mean(losses))}
        if step < steps:  # a paused leg is compared on loss (halving.RULE says why), the end on ROUGE-L
            return {**leg, "metric": "validation loss", "scores": [-loss for loss in losses]}
        rouge = sweep.validation_scores(model, method_data.tokenizer, validation, leg_cfg)
        return {**leg, "metric": "validation rougeL", "scores": rouge, "rougeL": float(np.mean(rouge))}

    return run_leg


def tune(cfg: TrainConfig, method: Method, method_data: MethodData, out: Path) -> dict:
    """The method's learning-rate sweep (training/sweep.py), its legs trained by leg_runner."""
    steps = sweep_steps(cfg, method_data)
    validation = method_data.data.splits["validation"]

    def untrained_rouge_l() -> float:  # the floor a chosen rate must beat: the method's model before training
        set_seed(cfg.seed)
        model = build_model(method, cfg, Path(cfg.output_dir), steps)
        return float(np.mean(sweep.validation_scores(model, method_data.tokenizer, validation, cfg)))

    run_leg = leg_runner(cfg, method, method_data, out)
    return sweep.run_sweep(cfg, method, Path(cfg.output_dir), cfg.learning_rate, steps, run_leg, untrained_rouge_l)


def promote_best_trial(method: Method, trial: Path, out: Path, recorded: dict, sweep_seconds: float) -> None:
    """The sweep's winner becomes the served model: its weights moved into <method>/ (a rename), then its
    metrics.json, with the rate's story and the sweep's cost beyond the winner's own training, written last (the
    method is complete)."""
    weights = trial / (MODEL if method.kind == "full" else ADAPTER)
    target = out / weights.name
    if weights.exists():  # else a killed process moved them already: they are in place
        shutil.rmtree(target, ignore_errors=True)
        os.replace(weights, target)
    metrics = read_json(trial / METHOD_METRICS, schema_for(method_metrics(method.name)))
    metrics.update(recorded)
    metrics["cost"]["sweep_seconds"] = max(0.0, sweep_seconds - metrics["cost"]["train_seconds"])
    finish(out, metrics)
    print(
        f"{method.name}: served the sweep's best trial (learning rate {metrics['hyperparameters']['learning_rate']:g})"
        f" -> {target}"
    )


def wait_for_rank_zero() -> None:
    """Under torchrun, every rank waits here until all have arrived (rank 0 has written what they read next)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def train_extra_seed(cfg: TrainConfig, method: Method, out: Path, method_data: MethodData) -> dict:
    """A seed beyond the served one, in <method>/seeds/seed-N (complete once its metrics.json is written: a
    resumed run skips it, or continues it from its newest complete checkpoint)."""
    folder = out / SEEDS / f"seed-{cfg.seed}"
    if not (folder / METHOD_METRICS).exists():
        resume_from = newest_complete_checkpoint(folder / CHECKPOINTS) if cfg.resume else None
        train(cfg, method, folder, resume_from, method_data, recorded={"learning_rate": {"value": cfg.learning_rate}})
        wait_for_rank_zero()  # under torchrun, rank 0 alone writes the metrics.json every rank reads next
    metrics = read_json(folder / METHOD_METRICS, schema_for(method_metrics(method.name)))
    return {
        "seed": cfg.seed,
        "folder": str(folder.relative_to(out)),
        "train_seconds": metrics["cost"]["train_seconds"],
        **({"energy": metrics["cost"]["energy"]} if "energy" in metrics["cost"] else {}),
        "final": metrics["final"],
    }


def start_training(cfg: TrainConfig, method: Method, out: Path, resume_from, method_data: MethodData, callbacks=()):
    """The model (its initial weights from the seed, whatever ran before in this process) and its Trainer."""
    args = trainer_arguments(cfg, out)
    set_seed(cfg.seed)
    model = build_model(method, cfg, Path(cfg.output_dir),
                        optimizer_steps(cfg, len(method_data.train.dataset), args.world_size))
    trainer, keeper = make_trainer(model, method_data.tokenizer, args, method_data.train, method_data.evalset,
                                   resume_from, callbacks, cfg.energy)
    return model, trainer, keeper


def train(cfg: TrainConfig, method: Method, out: Path, resume_from, method_data: MethodData, callbacks=(),
          recorded=None, cost=None):
    """Train `method` at the resolved `cfg` into `out` (held by this process): weights, then metrics.json, with
    `recorded` (what it says beyond the training: the rate's story, the seeds) and `cost` (the sweep's seconds)
    added. Returns the trained model."""
    wall_start = time.perf_counter()
    model, trainer, keeper = start_training(cfg, method, out, resume_from, method_data, callbacks)
    fit(trainer, resume_from)
    if trainer.is_world_process_zero():
        weights = save_weights(method, trainer, model, out)
        metrics = training_metrics(method, cfg, method_data.data, method_data.train, method_data.evalset, trainer,
                                   keeper, model, wall_start, weights)
        metrics.update(recorded or {})
        metrics["cost"].update(cost or {})
        finish(out, metrics)
        print(f"{method.name} (seed {cfg.seed}): {metrics['final']} -> {weights}")
    return model


def train_until(cfg: TrainConfig, method: Method, out: Path, resume_from, method_data: MethodData, step: int,
                callbacks=()):
    """A sweep's paused leg: train `method` (the full budget's schedule) to `step`, where a complete checkpoint
    in `out` is all it writes, and return the model."""
    model, trainer, _ = start_training(cfg, method, out, resume_from, method_data, [*callbacks, PauseAt(step)])
    if checkpoint_step(resume_from) == step:  # killed after this checkpoint, before the sweep heard of it
        trainer._load_from_checkpoint(resume_from)  # the Trainer's own loader (full or adapter weights)
    else:
        fit(trainer, resume_from, eval_at_end=False)
    return model


def single_method(cfg: TrainConfig) -> Method:
    """The recipe trains one method: --method NAME, or one --method_config."""
    if not cfg.method and len(cfg.method_config) != 1:
        raise ConfigError("training.finetune trains one method: give --method NAME (full, lora, ia3, ...) or one "
                          "--method_config NAME=PATH; `python -m training --methods a,b` trains several.")
    chosen = resolve_methods(cfg.method or "", cfg.method_config)
    if len(chosen) != 1:
        raise ConfigError(f"training.finetune trains one method; this asks for {', '.join(m.name for m in chosen)}. "
                          "Use `python -m training --methods ...` for several.")
    return chosen[0]


def main(argv=None) -> None:
    def train_one():
        cfg = parse_config(argv, description=__doc__)
        method = single_method(cfg)
        check_run(cfg, [method])  # every option, before the run folder exists
        return run(cfg, method)

    run_cli(train_one)


if __name__ == "__main__":
    main()
