"""What the full and LoRA recipes share: run folder checks, tokenized data, Trainer arguments, cost and loss
tracking, and the metrics.json they write. Each recipe file stays a short script on top of these."""

import dataclasses
import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import datasets
import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from artifacts.contract import METHOD_METRICS, RUN_JSON, read_run_file, write_json, write_run_file
from training.config import TrainConfig
from training.data import LoadedData, format_prompt, load_data
from training.modeling import TINY_BASE_DIR, build_tiny_base, count_parameters

CHECKPOINTS = "checkpoints"  # Trainer checkpoints for --resume, removed once the run completes
CHECKPOINT_DONE = "checkpoint_done.json"  # written last into a checkpoint: without it the checkpoint is incomplete


class RunFolderError(RuntimeError):
    """The output folder is in a state the request cannot use (exists without --overwrite, nothing to resume)."""


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict:
    import peft
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "datasets": datasets.__version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class AlreadyComplete(RunFolderError):
    """--resume on a method whose metrics.json exists: nothing to do (the pipeline skips it)."""


def check_output_folder(cfg: TrainConfig, name: str) -> tuple[Path, Optional[str]]:
    """(the method's folder, the checkpoint to resume from or None). Never sends the user in a circle:
    --resume continues from the newest COMPLETE checkpoint, or starts the method over when there is none;
    a plain run refuses an existing folder and says both ways on."""
    out = Path(cfg.output_dir) / name
    if cfg.resume:
        if (out / METHOD_METRICS).exists():
            raise AlreadyComplete(f"{out} is already complete ({out / METHOD_METRICS} exists): nothing to resume. "
                                  "Pass --overwrite to train it again.")
        checkpoint = newest_complete_checkpoint(out / CHECKPOINTS)
        if checkpoint is None:
            print(f"--resume: {out} has no complete checkpoint; training {name} from step 0.", flush=True)
            wipe(out)
        return out, checkpoint
    if out.exists():
        if not cfg.overwrite:
            raise RunFolderError(f"{out} already exists. Pass --resume to continue it (from its newest complete "
                                 "checkpoint, or from step 0 if it has none), --overwrite to replace it, or "
                                 "--output_dir for a new run folder.")
        wipe(out)
    return out, None


def newest_complete_checkpoint(folder: Path) -> Optional[str]:
    """The newest checkpoint-N that holds CHECKPOINT_DONE (written after everything else). Incomplete ones, left
    by a kill in the middle of a save, are named and deleted so the Trainer never sees them."""
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1, reverse=True)
    complete = None
    for checkpoint in found:
        if complete is None and (checkpoint / CHECKPOINT_DONE).exists():
            complete = checkpoint
        elif not (checkpoint / CHECKPOINT_DONE).exists() and is_main_process():
            print(f"--resume: skipping {checkpoint}: incomplete (no {CHECKPOINT_DONE}; the save was interrupted); "
                  "deleting it.", flush=True)
            shutil.rmtree(checkpoint, ignore_errors=True)
    if complete is not None:
        print(f"--resume: continuing from {complete}.", flush=True)
    return str(complete) if complete else None


def is_main_process() -> bool:
    """Before the Trainer exists (under torchrun every process runs this code): only rank 0 deletes or prints."""
    return int(os.environ.get("RANK", "0")) == 0


def wipe(out: Path) -> None:
    if out.exists() and is_main_process():
        shutil.rmtree(out, ignore_errors=True)


def precision_flags(cfg: TrainConfig) -> dict:
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not bf16_ok:
        raise ValueError("--precision bf16 needs a GPU with bf16 support; use --precision fp32 here.")
    return {"bf16": cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok)}


def trainer_arguments(cfg: TrainConfig, out: Path) -> Seq2SeqTrainingArguments:
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
        report_to="none",
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() else None,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision_flags(cfg),
    )


def prepare_run(cfg: TrainConfig, args: Seq2SeqTrainingArguments) -> LoadedData:
    """Load the data and, once per run (main process first), build the tiny base and write run.json."""
    data = load_data(cfg.data)
    if cfg.max_train_samples:
        data.splits["train"] = data.splits["train"].iloc[:cfg.max_train_samples]
    if cfg.max_eval_samples:
        data.splits["validation"] = data.splits["validation"].iloc[:cfg.max_eval_samples]
    run_dir = Path(cfg.output_dir)
    with args.main_process_first(desc="build the base model and run.json"):
        if args.process_index == 0:
            if cfg.base_model is None:
                texts = [t for s in data.splits.values() for t in (*s["dialogue"], *s["summary"])]
                build_tiny_base(cfg, run_dir, texts, list(data.splits["train"]["dialogue"]))
            write_or_check_run_json(cfg, run_dir)
    return data


def write_or_check_run_json(cfg: TrainConfig, run_dir: Path) -> None:
    base = cfg.base_model or TINY_BASE_DIR
    if (run_dir / RUN_JSON).exists():
        existing = read_run_file(run_dir, RUN_JSON)
        if existing["base_model"] != base or existing["data_source"] != cfg.data:
            raise RunFolderError(f"{run_dir / RUN_JSON} was written for base model {existing['base_model']!r} and "
                                 f"data {existing['data_source']!r}, not {base!r}/{cfg.data!r}. Use another "
                                 "--output_dir so the run's methods stay comparable.")
        return
    write_run_file(run_dir, RUN_JSON, {
        "schema_version": 1, "preset": cfg.preset, "base_model": base,
        "tokenizer": cfg.tokenizer or base, "data_source": cfg.data, "created_at": utc_now(),
        "versions": package_versions(), "git_commit": git_commit()})


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
    """Marks each checkpoint complete once the Trainer has written all of it, with the training seconds and peak
    memory so far (summed over resumed segments); only then deletes the older checkpoints."""

    def __init__(self, resume_from: Optional[str]):
        before = json.loads((Path(resume_from) / CHECKPOINT_DONE).read_text()) if resume_from else {}
        self.seconds_before = before.get("train_seconds", 0.0)
        self.segments_before = before.get("segments", 0)
        self.peak_before = before.get("peak_memory_bytes", 0)
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir)
        newest = folder / f"checkpoint-{state.global_step}"
        write_json(newest / CHECKPOINT_DONE, {
            "step": state.global_step, "train_seconds": self.seconds(), "segments": self.segments_before + 1,
            "peak_memory_bytes": max(self.peak_before, peak_memory()[0])}, schema=None)
        for older in folder.glob("checkpoint-*"):
            if older != newest:
                shutil.rmtree(older, ignore_errors=True)


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


def make_trainer(model, tokenizer, args, train: TokenizedSplit, evalset: TokenizedSplit, resume_from, callbacks=()):
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    keeper = CheckpointKeeper(resume_from)
    trainer = ResumableTrainer(model=model, args=args, train_dataset=train.dataset, eval_dataset=evalset.dataset,
                               data_collator=collator, processing_class=tokenizer, callbacks=[keeper, *callbacks])
    return trainer, keeper


def peak_memory() -> tuple[int, str]:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_peak_rss"  # Linux: KiB


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def fit(trainer, resume_from: Optional[str]) -> None:
    """Train (from `resume_from` if given), then make sure the last step has an eval loss."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train(resume_from_checkpoint=resume_from)
    last_eval = max((r["step"] for r in loss_history(trainer.state) if "eval_loss" in r), default=-1)
    if last_eval != trainer.state.global_step:
        trainer.evaluate()


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
        "schema_version": 1, "kind": method.name, "method": method.describe(), "created_at": utc_now(),
        "hyperparameters": {**dataclasses.asdict(cfg), "peft_config": method.peft}, "seed": cfg.seed,
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
                 "checkpoint_bytes": folder_bytes(checkpoint_dir)},
        "loss_history": history,
        "final": {"train_loss": trains[-1] if trains else None, "eval_loss": evals[-1] if evals else None,
                  "steps": state.global_step},
    }


def finish(method, out: Path, metrics: dict) -> None:
    """metrics.json last: a method folder with metrics.json is complete. Then the checkpoints go."""
    write_run_file(out.parent, f"{method.name}/{METHOD_METRICS}", metrics)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
