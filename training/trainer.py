"""Trainer set-up shared by every method: arguments, tokenized data, a resumable length-grouped sampler,
complete-only checkpoints, and the cost and loss figures of metrics.json."""

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import datasets
import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from contract.files import write_json
from contract.protocol import TRAINING_CURVES
from training.capabilities import capabilities
from training.config import TrainConfig, options_of
from training.data import format_prompt
from training.energy import OFF, EnergyMeter
from training.modeling import count_parameters
from training.provenance import device_name, peak_memory, source, utc_now
from training.run_folder import CHECKPOINT_DONE, CHECKPOINTS


def precision_flags(cfg: TrainConfig) -> dict:
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not bf16_ok:
        raise ValueError("--precision bf16 needs a GPU with bf16 support; use --precision fp32 here.")
    return {"bf16": cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok)}


def trainer_arguments(cfg: TrainConfig, out: Path) -> Seq2SeqTrainingArguments:
    """The Trainer's arguments. With --report_to tensorboard, the event files go to <run>/tensorboard/<out's place
    in the run> (outside trial and checkpoint folders, which are removed)."""
    if cfg.report_to == "tensorboard":  # transformers' TensorBoardCallback reads its folder from this variable
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(cfg.output_dir) / TRAINING_CURVES /
                                                    Path(out).resolve().relative_to(Path(cfg.output_dir).resolve()))
    return Seq2SeqTrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=cfg.logging_steps,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # CheckpointKeeper deletes older checkpoints only after the new one is complete
        train_sampling_strategy="group_by_length",  # similar lengths per batch: little padding
        include_num_input_tokens_seen="non_padding",
        seed=cfg.seed,
        report_to=cfg.report_to,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() else None,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision_flags(cfg),
    )


@dataclass
class TokenizedSplit:
    dataset: datasets.Dataset
    truncated: int          # inputs longer than max_source_length
    truncated_targets: int  # summaries longer than max_target_length
    tokens: int             # non-padding input + label tokens in one pass over the split


def tokenize(frame, tokenizer, cfg: TrainConfig) -> TokenizedSplit:
    """Token ids without padding (the collator pads each batch); truncation keeps the final </s> and is counted."""
    prompts = [format_prompt(d, cfg.prompt_template) for d in frame["dialogue"]]
    sources = tokenizer(prompts)["input_ids"]
    targets = tokenizer(text_target=list(frame["summary"]))["input_ids"]

    def cut(ids, limit):
        return ids if len(ids) <= limit else ids[:limit - 1] + [tokenizer.eos_token_id]

    ds = datasets.Dataset.from_dict({
        "input_ids": [cut(s, cfg.max_source_length) for s in sources],
        "labels": [cut(t, cfg.max_target_length) for t in targets],
    })
    return TokenizedSplit(
        dataset=ds,
        truncated=sum(len(s) > cfg.max_source_length for s in sources),
        truncated_targets=sum(len(t) > cfg.max_target_length for t in targets),
        tokens=sum(min(len(s), cfg.max_source_length) + min(len(t), cfg.max_target_length)
                   for s, t in zip(sources, targets)),
    )


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped order, drawn from its own generator seeded by (seed, epoch) instead of torch's
    global RNG: a run resumed in the middle of an epoch gets the same permutation for that epoch, so skipping the
    batches already trained leaves exactly the batches an uninterrupted run sees next."""

    def __init__(self, *args, seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this before each epoch (through accelerate)
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return super().__iter__()


class ResumableTrainer(Seq2SeqTrainer):
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return EpochSeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                               dataset=dataset, seed=self.args.seed)


class CheckpointKeeper(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written all of it, with the training seconds, peak
    memory and energy so far (summed over resumed segments); only then deletes the older checkpoints."""

    def __init__(self, resume_from: Optional[str], energy_country: str = OFF):
        before = json.loads((Path(resume_from) / CHECKPOINT_DONE).read_text()) if resume_from else {}
        self.seconds_before = before.get("train_seconds", 0.0)
        self.segments_before = before.get("segments", 0)
        self.peak_before = before.get("peak_memory_bytes", 0)
        self.energy = EnergyMeter(energy_country, before.get("energy"))
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.energy.start()  # first: codecarbon's hardware detection is not training time
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.energy.stop()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir)
        newest = folder / f"checkpoint-{state.global_step}"
        write_json(newest / CHECKPOINT_DONE, {
            "step": state.global_step, "train_seconds": self.seconds(), "segments": self.segments_before + 1,
            "peak_memory_bytes": max(self.peak_before, peak_memory()[0]), "energy": self.energy.reading()},
            schema=None)
        for older in folder.glob("checkpoint-*"):
            if older != newest:
                shutil.rmtree(older, ignore_errors=True)


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA prunes its ranks to the budget (target_r) only if update_and_allocate runs after every optimizer
    step, before the gradients are zeroed; the Trainer does not call it, so this callback does."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


class PauseAt(TrainerCallback):
    """Ends training at `step` of the full schedule with a complete checkpoint there, from which a later run
    continues exactly as if it had never stopped (a sweep's paused leg)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def loop_callbacks(model) -> list:
    """The callbacks a model's peft type needs from the training loop (training/methods.py says which types)."""
    types = {str(getattr(c, "peft_type", "")) for c in getattr(model, "peft_config", {}).values()}
    return [AdaLoraBudget()] if any(t.endswith("ADALORA") for t in types) else []


def optimizer_steps(cfg: TrainConfig, examples: int, world_size: int) -> int:
    """How many optimizer steps the run makes (what the Trainer will compute), known before it starts."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = math.ceil(examples / (cfg.batch_size * world_size)) // cfg.gradient_accumulation_steps
    return max(1, math.ceil(max(1, per_epoch) * cfg.num_train_epochs))


def loss_history(state) -> list[dict]:
    """Train and eval loss at every logging step, from the Trainer's own log, which a resumed run restores from
    its checkpoint: the history of the whole run, not of the last segment."""
    rows = {}
    for log in state.log_history:
        for key, name in (("loss", "train_loss"), ("eval_loss", "eval_loss")):
            if key in log and math.isfinite(log[key]):
                row = rows.setdefault(log["step"], {"step": log["step"], "epoch": round(log.get("epoch") or 0, 4)})
                row[name] = float(log[key])
    return [rows[k] for k in sorted(rows)]


def make_trainer(model, tokenizer, args, train: TokenizedSplit, evalset: TokenizedSplit, resume_from, callbacks=(),
                 energy_country: str = OFF):
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    keeper = CheckpointKeeper(resume_from, energy_country)
    trainer = ResumableTrainer(model=model, args=args, train_dataset=train.dataset, eval_dataset=evalset.dataset,
                               data_collator=collator, processing_class=tokenizer,
                               callbacks=[keeper, *loop_callbacks(model), *callbacks])
    return trainer, keeper


def fit(trainer, resume_from: Optional[str], eval_at_end: bool = True) -> None:
    """Train (from `resume_from` if given), then (`eval_at_end`) make sure the last step has an eval loss."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except BaseException:  # a trial stopped by a callback, a kill: the bar is drawn now, not after the error line
        close_progress_bars(trainer)
        raise
    last_eval = max((r["step"] for r in loss_history(trainer.state) if "eval_loss" in r), default=-1)
    if eval_at_end and last_eval != trainer.state.global_step:
        trainer.evaluate()


def close_progress_bars(trainer) -> None:
    """Close the progress bars a Trainer left open when training ended in an exception (tqdm would otherwise
    redraw them at exit, below the command's one-line error)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for name in ("training_bar", "prediction_bar"):
                if getattr(callback, name, None) is not None:
                    getattr(callback, name).close()
                    setattr(callback, name, None)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def training_metrics(method, cfg, data, train, evalset, trainer, keeper: CheckpointKeeper, model, wall_start,
                     checkpoint_dir) -> dict:
    """metrics.json of one method: the whole run's figures, however many resumed segments it took."""
    state = trainer.state
    epochs_done = state.epoch or 0.0
    train_seconds = keeper.seconds()
    peak, measure = peak_memory()
    history = loss_history(state)
    evals = [r["eval_loss"] for r in history if "eval_loss" in r]
    trains = [r["train_loss"] for r in history if "train_loss" in r]
    return {
        "schema_version": 1, "kind": method.name, "method": {**method.describe(), **capabilities(method)},
        "created_at": utc_now(),
        "source": source(),
        "hyperparameters": {**options_of(cfg), "peft_config": method.peft}, "seed": cfg.seed,
        "data": {"source": data.source, "train": len(train.dataset), "eval": len(evalset.dataset),
                 "skipped": sum(data.skipped.values()), "truncated": train.truncated + evalset.truncated,
                 "truncated_targets": train.truncated_targets + evalset.truncated_targets, "notes": data.notes},
        "parameters": count_parameters(model),
        "cost": {"wall_seconds": time.perf_counter() - wall_start, "train_seconds": train_seconds,
                 "segments": keeper.segments_before + 1,
                 "examples_per_second": len(train.dataset) * epochs_done / train_seconds,
                 "tokens_per_second": train.tokens * epochs_done / train_seconds,
                 "peak_memory_bytes": int(max(peak, keeper.peak_before)), "peak_memory_measure": measure,
                 "device": device_name(), "world_size": trainer.args.world_size,
                 "checkpoint_bytes": folder_bytes(checkpoint_dir),
                 **({"energy": keeper.energy.before} if keeper.energy.before else {})},
        "loss_history": history,
        "final": {"train_loss": trains[-1] if trains else None, "eval_loss": evals[-1] if evals else None,
                  "steps": state.global_step},
    }
