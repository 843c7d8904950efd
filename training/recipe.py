"""What the full and LoRA recipes share: run folder checks, tokenized data, Trainer arguments, cost and loss
tracking, and the metrics.json they write. Each recipe file stays a short script on top of these."""

import dataclasses
import datetime as dt
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from artifacts.contract import RUN_JSON, read_run_file, write_run_file
from training.config import TrainConfig
from training.data import LoadedData, format_prompt, load_data
from training.modeling import TINY_BASE_DIR, build_tiny_base, count_parameters

CHECKPOINTS = "checkpoints"  # Trainer checkpoints for --resume, removed once the run completes


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


def check_output_folder(cfg: TrainConfig, kind: str) -> Path:
    """The method's folder inside the run: refused if it exists unless --overwrite (wiped) or --resume."""
    out = Path(cfg.output_dir) / kind
    if cfg.resume:
        if not (out / CHECKPOINTS).is_dir():
            raise RunFolderError(f"--resume: no Trainer checkpoint in {out / CHECKPOINTS}; run without --resume.")
    elif out.exists():
        if not cfg.overwrite:
            raise RunFolderError(f"{out} already exists. Pass --overwrite to replace it, --resume to continue an "
                                 "interrupted run, or --output_dir for a new run folder.")
    return out


def wipe(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)


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
        save_total_limit=1,
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


class LossHistory(TrainerCallback):
    """Train and eval loss at every logging step, as the Trainer reports them."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, name in (("loss", "train_loss"), ("eval_loss", "eval_loss")):
            if logs and key in logs and math.isfinite(logs[key]):
                row[name] = float(logs[key])
        if len(row) > 2:
            self.rows.append(row)


def make_trainer(model, tokenizer, args, train: TokenizedSplit, evalset: TokenizedSplit, callbacks=()):
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    history = LossHistory()
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train.dataset, eval_dataset=evalset.dataset,
                             data_collator=collator, processing_class=tokenizer,
                             callbacks=[history, *callbacks])
    return trainer, history


def peak_memory() -> tuple[int, str]:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_peak_rss"  # Linux: KiB


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def fit(trainer, cfg: TrainConfig, history: LossHistory) -> float:
    """Train (resuming if asked), then make sure the last step has an eval loss; returns training seconds."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if cfg.resume else None)
    seconds = time.perf_counter() - start
    last_eval = max((r["step"] for r in history.rows if "eval_loss" in r), default=-1)
    if last_eval != trainer.state.global_step:
        trainer.evaluate()
    return seconds


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def training_metrics(kind, cfg, data, train, evalset, trainer, history, model, train_seconds, wall_start,
                     checkpoint_dir) -> dict:
    state = trainer.state
    epochs_done = state.epoch or 0.0
    peak, measure = peak_memory()
    evals = [r["eval_loss"] for r in history.rows if "eval_loss" in r]
    trains = [r["train_loss"] for r in history.rows if "train_loss" in r]
    return {
        "schema_version": 1, "kind": kind, "created_at": utc_now(),
        "hyperparameters": dataclasses.asdict(cfg), "seed": cfg.seed,
        "data": {"source": data.source, "train": len(train.dataset), "eval": len(evalset.dataset),
                 "skipped": sum(data.skipped.values()), "truncated": train.truncated + evalset.truncated,
                 "truncated_targets": train.truncated_targets + evalset.truncated_targets, "notes": data.notes},
        "parameters": count_parameters(model),
        "cost": {"wall_seconds": time.perf_counter() - wall_start, "train_seconds": train_seconds,
                 "examples_per_second": len(train.dataset) * epochs_done / train_seconds,
                 "tokens_per_second": train.tokens * epochs_done / train_seconds,
                 "peak_memory_bytes": int(peak), "peak_memory_measure": measure, "device": device_name(),
                 "world_size": trainer.args.world_size, "checkpoint_bytes": folder_bytes(checkpoint_dir)},
        "loss_history": history.rows,
        "final": {"train_loss": trains[-1] if trains else None, "eval_loss": evals[-1] if evals else None,
                  "steps": state.global_step},
    }
