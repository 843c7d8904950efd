"""Every option and every method checked before any work: before the run folder is created, the base built or
downloaded, or a first method trained. A mistake is one ConfigError line (exit 2 through training/cli.py).

    python -m training --preset tiny --methods full,mine --method_config mine=bad/adapter_config.json
    error: --method_config mine: peft cannot build it on the base model: Target modules {'zzz'} not found ...

What is checked: each method's resolved settings (training/config.py), the seed range, the sweep's rates, floor
and storage (opened once), and each peft config built on the meta device (no memory, no weights) against the
base's architecture: target modules that exist, sizes peft accepts, an adapter no larger than the base.
"""

import importlib.util
import math
from pathlib import Path

import torch

from training import sweep
from training.config import (
    TINY_T5,
    TINY_VOCAB_SIZE,
    ConfigError,
    TrainConfig,
    check_counts,
    check_output_dir,
    resolve,
    run_folder_of,
)
from training.energy import check_country
from training.methods import BUILTIN, Method
from training.retention import check_retention_data

MAX_SEED = 2**32 - 1  # numpy's and the Trainer's seeds are 32-bit


def check_run(cfg: TrainConfig, methods: list[Method]) -> None:
    """Raise ConfigError on the first setting or method that cannot work."""
    resolved = [resolve(cfg, m.settings(cfg.preset)) for m in methods]
    check_output_dir(cfg)
    if not 0 <= cfg.seed or cfg.seed + cfg.seeds - 1 > MAX_SEED:
        raise ConfigError(
            f"--seed {cfg.seed} with --seeds {cfg.seeds} uses seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}; "
            f"seeds must lie in 0..{MAX_SEED}: give a smaller --seed."
        )
    if cfg.sweep.over:
        check_sweep(cfg, resolved)
    check_report_to(cfg.report_to)
    if problem := check_country(cfg.energy):
        raise ConfigError(problem)
    if cfg.evaluation.serving_dialogues is not None and cfg.evaluation.serving_dialogues < 0:
        raise ConfigError(f"--serving_dialogues must be 0 (skip) or more (got {cfg.evaluation.serving_dialogues})")
    check_jobs(cfg)
    check_retention_data(cfg.evaluation.retention_data)
    config = base_config(resolved[0]) if resolved else None
    for method, r in zip(methods, resolved):
        if method.peft is not None and config is not None:
            check_on_meta(method, r, config)


REPORTERS = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}  # --report_to -> its package


def check_report_to(report_to: str) -> None:
    """The package the Trainer logs through must be installed (transformers would fail at the first step)."""
    package = REPORTERS.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--report_to {report_to}: the {package} package is not installed; "
                          f"`pip install {package}`, or --report_to none.")


def check_sweep(cfg: TrainConfig, resolved: list[TrainConfig]) -> None:
    for r in resolved:
        sweep.parse_rates(cfg.sweep.lr, r.learning_rate)
    if cfg.sweep.floor != "untrained":
        try:
            floor = float(cfg.sweep.floor)
        except ValueError:
            floor = math.nan
        if not math.isfinite(floor):
            raise ConfigError(f"--sweep_floor {cfg.sweep.floor!r}: give 'untrained' or a number such as 0.")
    if cfg.sweep.storage:
        sweep.check_storage(cfg.sweep.storage)
    elif cfg.resume:
        sweep.check_run_study(run_folder_of(cfg))


def check_jobs(cfg: TrainConfig) -> None:
    """--workers and --jobs_storage (training/jobs.py)."""
    if cfg.queue.workers < 0:
        raise ConfigError(f"--workers {cfg.queue.workers}: give 0 (one process) or more workers.")
    if (cfg.queue.workers or cfg.queue.storage) and cfg.overwrite:
        raise ConfigError("--overwrite with a job queue (--workers, --jobs_storage) would replace work the queue "
                          "holds: give another --output_dir for a new comparison, or --resume to continue this one.")
    if cfg.queue.storage:
        sweep.check_storage(cfg.queue.storage, "--jobs_storage")
    check_counts(cfg.queue, ("devices_per_job", "dialogues_per_job"))
    if cfg.queue.devices_per_job > 1 and not (cfg.queue.workers or cfg.queue.storage):
        raise ConfigError("--devices_per_job applies to a job queue: add --workers N (one process per device: "
                          "or run `torchrun --nproc_per_node=N -m training.finetune ...` for one method).")
    if cfg.queue.devices_per_job > 1 and cfg.sweep.over:
        raise ConfigError("--sweep trains its legs in one process each: with --devices_per_job > 1 give no --sweep, "
                          "or sweep with --devices_per_job 1 and more --workers.")


def base_config(cfg: TrainConfig):
    """The base model's architecture (config only, no weights): tiny's from TINY_T5, else the checkpoint's."""
    from transformers import AutoConfig, T5Config

    if cfg.base_model is None:
        return T5Config(vocab_size=TINY_VOCAB_SIZE, **TINY_T5)
    try:
        return AutoConfig.from_pretrained(cfg.base_model)
    except (OSError, ValueError) as e:
        where = "a local folder" if Path(cfg.base_model).exists() else "the Hub (connect once) or a local folder"
        raise ConfigError(
            f"--base_model {cfg.base_model}: its config cannot be read ({str(e).splitlines()[0][:160]}); give {where}."
        ) from None


def check_on_meta(method: Method, cfg: TrainConfig, config) -> None:
    """Build the base and wrap it with the method's peft config on the meta device: peft's own checks run (target
    modules present, sizes it accepts) and the trainable count is known, at no memory cost. A few peft types use
    operations the meta device cannot run (BOFT, SHiRA, Uni-LoRA): those are checked when the model is built."""
    from peft import get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    try:
        with torch.device("meta"):
            base = AutoModelForSeq2SeqLM.from_config(config)
            base_size = sum(p.numel() for p in base.parameters())
            model = get_peft_model(base, method.peft_config(config, 1000))
    except NotImplementedError:
        return
    except RuntimeError as e:
        if "meta" in str(e):
            return
        raise ConfigError(f"{source(method)}: peft cannot build it on {cfg.base_model or 'the tiny base'}: "
                          f"{one_line(e)}") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
        raise ConfigError(f"{source(method)}: peft cannot build it on {cfg.base_model or 'the tiny base'}: "
                          f"{one_line(e)}") from None
    check_adapter_size(method, sum(p.numel() for p in model.parameters() if p.requires_grad), base_size,
                       cfg.allow_large_adapter)


def check_adapter_size(method: Method, trainable: int, base_size: int, allowed: bool) -> None:
    """A peft method is meant to be small: an adapter training more than the whole base (usually a typo in r or a
    size field) is refused unless --allow_large_adapter."""
    if trainable > base_size and not allowed:
        raise ConfigError(f"{source(method)}: its adapter trains {trainable:,} parameters, more than the whole base "
                          f"model ({base_size:,}); check r or its size field, or pass --allow_large_adapter.")


def source(method: Method) -> str:
    return f"--methods {method.name}" if method.name in BUILTIN else f"--method_config {method.name}"


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
