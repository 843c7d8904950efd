"""Run configuration: TrainConfig, the recipe's settings with its sweep, evaluation and job-queue settings in
groups of their own (`cfg.sweep.lr`, `cfg.evaluation.limit`, `cfg.queue.workers`), whose field docs are the CLI
help (each setting keeps its one flag: --sweep_lr, --eval_limit, --workers); presets fill what is left unset.

A field left at None takes the preset's value for the method being trained (training/methods.py holds each
method's per-preset settings); anything given on the command line wins. `resolve()` fills and validates
once; the resolved config is saved with the run.
"""

import dataclasses
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, get_type_hints

from transformers import HfArgumentParser

from contract.files import RUN_JSON
from contract.protocol import DEFAULT_PROMPT, MAX_SOURCE_TOKENS, QUICK_PRESET_TIME, prompt_problem


@dataclass(frozen=True)
class Hyper:
    """Preset optimisation settings for one method; `why` is printed in the README table."""
    learning_rate: float
    num_train_epochs: float
    batch_size: int
    warmup_ratio: float
    why: str


@dataclass(frozen=True)
class Preset:
    base_model: Optional[str]           # Hub id or local path; None = built from TINY_T5 at run time
    data: str                           # default --data
    logging_steps: int = 50
    eval_steps: int = 200
    settings_of: Optional[str] = None   # take the methods' settings (rates, batch) of this preset; None = its own
    epochs: Optional[float] = None      # ... but this many epochs
    max_train_samples: Optional[int] = None   # default --max_train_samples
    max_eval_samples: Optional[int] = None    # default --max_eval_samples
    eval_limit: Optional[int] = None          # default --eval_limit (test dialogues evaluated)
    batch_size: Optional[int] = None          # default per-device batch instead of the methods' ...
    gradient_accumulation: int = 1            # ... with this many batches per optimizer step (same effective batch)
    serving_dialogues: int = 8                # default --serving_dialogues (0: the serving cost is not measured)


PRESETS = {
    "flan-t5-base": Preset(base_model="google/flan-t5-base", data="hub"),
    "flan-t5-small": Preset(base_model="google/flan-t5-small", data="hub"),
    # Real FLAN-T5 on a laptop: flan-t5-small, one epoch over 256 training dialogues and 200 test dialogues, sized so
    # that `python app.py --preset quick` serves within QUICK_PRESET_TIME (benchmarks P10). Batches of 8 accumulated
    # 4 times (flan-t5-small's batch of 32): a batch of 32 long dialogues does not fit a laptop's RAM on a CPU.
    "quick": Preset(base_model="google/flan-t5-small", data="hub", logging_steps=2, eval_steps=4,
                    settings_of="flan-t5-small", epochs=1, max_train_samples=256, max_eval_samples=100, eval_limit=200,
                    batch_size=8, gradient_accumulation=4, serving_dialogues=0),
    "tiny": Preset(base_model=None, data="sample", logging_steps=10, eval_steps=50),
}

# The offline preset's architecture: small enough for 2 CPU cores, the same T5 code as FLAN-T5.
TINY_T5 = dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4,
               feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False)
TINY_VOCAB_SIZE = 1000
DEFAULT_METHODS = "full,lora"  # what `python -m training` trains unless --methods says otherwise
DEFAULT_SWEEP_LR = ("x1/3", "x1", "x3")  # a sweep's first rates: the method's default and one step of 3 each way


@dataclass
class SweepSettings:
    """learning-rate sweep (--sweep lr)"""
    over: Optional[str] = field(default=None, metadata={
        "flag": "sweep", "choices": ["lr"],
        "help": "'lr': successive halving over learning rates around the method's default (--sweep_lr), each "
                "with the full budget's schedule: every rate trains to 1/16 of the steps and is scored on the "
                "validation split (teacher-forced loss per dialogue); the default and the best challenger continue "
                "from their checkpoints to 1/4, and one continues to the end (ROUGE-L of greedy summaries) and is the "
                "served model. A challenger replaces the default only when it leads beyond the paired bootstrap's "
                "noise, and never when it ends below the untrained model (--sweep_floor). The grid extends once at "
                "the first rung when the best sits at its edge. Writes <run>/<method>/sweep.json; the test split is "
                "never used (docs/sweeps.md)."})
    lr: list[str] = field(default_factory=lambda: list(DEFAULT_SWEEP_LR), metadata={
        "flag": "sweep_lr",
        "help": "The rates a sweep tries: factors of the method's default written xF (x1/3 x1 x3, the default) or "
                "plain rates (1e-3 3e-3 1e-2), several after one flag."})
    eval_dialogues: int = field(default=100, metadata={
        "flag": "sweep_eval_dialogues",
        "help": "Validation dialogues whose greedy summaries score a sweep trial (ROUGE-L)."})
    floor: str = field(default="untrained", metadata={
        "flag": "sweep_floor",
        "help": "What a sweep trial's validation ROUGE-L must exceed to be chosen: 'untrained' (the method's model "
                "before any training: a rate that only made it worse is not usable) or a number (0: any trial that "
                "writes something, for smoke runs too short to learn). None beats it: the preset rate's complete "
                "trial is served (said); no usable trial at all: the method fails, saying which rates were tried and "
                "what to try."})
    storage: Optional[str] = field(default=None, metadata={
        "flag": "sweep_storage",
        "help": "Optuna storage URL the sweep's trials live in. Default: sqlite:///<run>/sweep.sqlite3. Several "
                "processes or machines given the same URL (a server database across machines) share the trials: "
                "each takes the next untried rate."})


@dataclass
class EvalSettings:
    """evaluation and serving cost (python -m training)"""
    limit: Optional[int] = field(default=None, metadata={
        "flag": "eval_limit",
        "help": "python -m training: evaluate only the first N test dialogues (a quick look); default all."})
    retention_data: str = field(default="hub", metadata={
        "help": "python -m training: the evaluation's held-out general text for the retention score of real "
                "presets: 'hub' (allenai/c4, streamed), 'none' (skip it; offline), or a .txt / .jsonl file."})
    serving_dialogues: Optional[int] = field(default=None, metadata={
        "help": "python -m training: after the evaluation, each model's serving cost is measured on this many test "
                "dialogues (half of them timed alone; training/serving_cost.py); 0 skips it. Default: the "
                "preset's (8; quick: 0, so that its first start stays within its time; measure it afterwards with "
                "python -m training.serving_cost)."})


@dataclass
class QueueSettings:
    """job queue (python -m training --workers)"""
    workers: int = field(default=0, metadata={
        "help": "python -m training: run the comparison as a job queue (training/jobs.py) with this many workers on "
                "this machine (one per GPU where there are GPUs, else the cores split among them); 0 (default): "
                "every method in this process, in order. Other machines join with `python -m training.worker`."})
    storage: Optional[str] = field(default=None, metadata={
        "flag": "jobs_storage",
        "help": "python -m training --workers: the queue's database, a SQLAlchemy URL (postgresql+psycopg://... "
                "for several machines); default <run>/jobs.sqlite3 (this machine)."})
    devices_per_job: int = field(default=1, metadata={
        "help": "python -m training --workers: the devices one method's training job runs on, under torchrun (one "
                "process per device, DDP through the Trainer): each local worker gets this many GPUs, or on a CPU "
                "this many processes over gloo. 1 (default): one process per job."})
    dialogues_per_job: int = field(default=250, metadata={
        "help": "python -m training --workers: a model's summaries of the test dialogues are one job per this many "
                "dialogues (rounded up to whole generation batches), so several workers share one model's "
                "summaries of a large test set."})


@dataclass
class TrainConfig:
    """What to train and how (the recipe's own settings), where it goes, and three groups of settings about other
    things: the learning-rate sweep (`cfg.sweep`), the comparison's evaluation (`cfg.evaluation`) and its job queue
    (`cfg.queue`). The command line names every setting by its flag (`--sweep_lr`, `--eval_limit`, `--workers`):
    option_fields() maps flags to fields, --help shows them in HELP_GROUPS."""
    preset: str = field(default="flan-t5-base", metadata={
        "help": "Preset: flan-t5-base (the lab's model), flan-t5-small, quick (flan-t5-small on 256 training and 200 "
                f"test dialogues: real FLAN-T5 in {QUICK_PRESET_TIME}), or tiny (offline, CPU, minutes).",
        "choices": list(PRESETS)})
    base_model: Optional[str] = field(default=None, metadata={
        "help": "Hub id or local folder of the base checkpoint. Default: the preset's (tiny builds one from config)."})
    tokenizer: Optional[str] = field(default=None, metadata={
        "help": "Tokenizer folder or Hub id. Default: the base model's; for tiny, one trained on the sample "
                "(or give ../shared/models/flan-t5-tokenizer for the real FLAN-T5 tokenizer)."})
    data: Optional[str] = field(default=None, metadata={
        "help": "'hub' (knkarthick/dialogsum), 'sample' (bundled, offline), a DialogSum folder or a .jsonl/.csv "
                "file. Default: hub for real presets, sample for tiny."})
    output_dir: Optional[str] = field(default=None, metadata={"help": "Run folder. Default: artifacts/<preset>."})
    overwrite: bool = field(
        default=False, metadata={"help": "Replace this method's existing output in the run folder."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the last Trainer checkpoint in the run folder."}
    )
    prompt_template: str = field(default=DEFAULT_PROMPT, metadata={"help": "Prompt with a {dialogue} placeholder."})
    max_source_length: int = field(default=MAX_SOURCE_TOKENS, metadata={"help": "Input tokens kept (FLAN-T5's "
                                                                          f"maximum is {MAX_SOURCE_TOKENS}); "
                                                            "longer inputs are truncated and counted."})
    max_target_length: int = field(default=128, metadata={"help": "Summary tokens kept as labels."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N validation rows."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "Peak learning rate. Default: preset."})
    num_train_epochs: Optional[float] = field(default=None, metadata={"help": "Epochs. Default: preset."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after N optimizer steps (overrides epochs); -1 = off."})
    batch_size: Optional[int] = field(default=None, metadata={"help": "Per-device training batch. Default: preset."})
    eval_batch_size: Optional[int] = field(
        default=None, metadata={"help": "Per-device eval batch. Default: 2x train."}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    warmup_ratio: Optional[float] = field(
        default=None, metadata={"help": "Warm-up fraction of steps. Default: preset."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    logging_steps: Optional[int] = field(default=None, metadata={"help": "Log the train loss every N steps."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "Eval loss every N steps (and at the end)."})
    save_steps: Optional[int] = field(default=None, metadata={"help": "Trainer checkpoint every N steps, for "
                                                               "--resume. Default: eval_steps."})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on GPUs that support it, else fp32), bf16 or fp32. fp16 is refused: T5 overflows in it.",
        "choices": ["auto", "bf16", "fp32"]})
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, dropout and data order."})
    methods: str = field(default=DEFAULT_METHODS, metadata={
        "help": "python -m training: the methods to train and compare: a comma list of built-in names (full, lora, "
                "ia3, loha, oft, ...; see training/methods.py) and your own; 'all' = the core eight (full, lora, "
                "lora_all, dora, ia3, prompt_tuning, prefix_tuning, qlora); 'catalogue' = every built-in. Both "
                "skip what cannot run here (QLoRA without CUDA), saying so."})
    method: Optional[str] = field(default=None, metadata={
        "help": "training.finetune: the one method to train (full, lora, ia3, ...; see training/methods.py)."})
    method_config: list[str] = field(default_factory=list, metadata={
        "help": "Your own method(s): NAME=PATH to a peft adapter_config.json (as peft saves it), e.g. "
                "lora_r4_qk=my/adapter_config.json; trained with the optimisation defaults of the built-in of "
                "the same peft type. Several: NAME=PATH NAME2=PATH2 after one flag, or the flag repeated."})
    allow_large_adapter: bool = field(default=False, metadata={
        "help": "Train a peft adapter even when it has more trainable parameters than the whole base model "
                "(refused otherwise: usually a typo in r or a size field)."})
    seeds: int = field(default=1, metadata={
        "help": "Train each method with this many seeds (--seed, --seed+1, ...): the evaluation reports the mean "
                "over seeds with an interval that includes seed-to-seed variation; the app serves --seed's model."})
    report_to: str = field(default="none", metadata={
        "help": "Where training curves go, besides metrics.json: none, tensorboard (event files in "
                "<run>/<method>/runs; open with `tensorboard --logdir <run>`), trackio (local unless TRACKIO_SPACE_ID "
                "names a Space; `trackio show`), wandb (needs `wandb login`). trackio and wandb are installed by you.",
        "choices": ["none", "tensorboard", "trackio", "wandb"]})
    energy: str = field(default="USA", metadata={
        "help": "Energy and CO2 of every training through codecarbon, offline (metrics.json: each component measured "
                "or estimated, said which): the ISO 3166 alpha-3 country whose average grid intensity gives the CO2 "
                "(USA, FRA, DEU, ...), or 'off'."})
    tiny_pretrain_steps: int = field(default=300, metadata={
        "help": "tiny only: steps of copy pre-training (dialogue -> its first turn, no summaries) that make the "
                "random base write text, as a pretrained base would; 0 keeps it random."})
    sweep: SweepSettings = field(default_factory=SweepSettings)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)


class ConfigError(ValueError):
    """A setting that cannot work; the message names the option and what to give instead."""


def merge_repeated_flags(argv: list[str], list_fields: set[str]) -> list[str]:
    """argparse keeps only the last of a repeated flag, silently. A list flag given several times gathers all its
    values (`--method_config a=x --method_config b=y` = `--method_config a=x b=y`); any other flag given twice is
    refused, naming it."""
    groups: dict[str, list[str]] = {}
    order, current = [], None
    for token in argv:
        if token.startswith("--"):
            flag, _, value = token.partition("=")
            if flag in groups and flag.lstrip("-") not in list_fields:
                raise ConfigError(f"{flag} is given twice ({' '.join(groups[flag]) or 'on'} and again); give it once.")
            if flag not in groups:
                groups[flag] = []
                order.append(flag)
            current = flag
            if value:
                groups[flag].append(value)
        elif current is None:
            order.append(token)
        else:
            groups[current].append(token)
    return [t for item in order for t in ([item, *groups[item]] if item in groups else [item])]


GROUPS = {"sweep": SweepSettings, "evaluation": EvalSettings, "queue": QueueSettings}  # TrainConfig field -> group


def flag_of(item: dataclasses.Field) -> str:
    """A setting's command-line name (--flag): its field's own name unless the field says another."""
    return item.metadata.get("flag", item.name)


def option_fields() -> list[tuple[Optional[str], dataclasses.Field]]:
    """(its group's field in TrainConfig, or None at the top; the field) of every setting, in TrainConfig's order."""
    found = []
    for item in dataclasses.fields(TrainConfig):
        group = GROUPS.get(item.name)
        found += [(item.name, f) for f in dataclasses.fields(group)] if group else [(None, item)]
    return found


def options_of(cfg: TrainConfig) -> dict:
    """Every setting by its flag: what metrics.json records as the hyperparameters and the job queue stores."""
    return {flag_of(f): getattr(getattr(cfg, group) if group else cfg, f.name) for group, f in option_fields()}


def config_from(options: dict) -> TrainConfig:
    """The TrainConfig of settings given by flag (options_of's inverse; a flag left out keeps its default)."""
    top, grouped = {}, {name: {} for name in GROUPS}
    for group, item in option_fields():
        if flag_of(item) in options:
            (grouped[group] if group else top)[item.name] = options[flag_of(item)]
    return TrainConfig(**top, **{name: GROUPS[name](**values) for name, values in grouped.items()})


def options_class():
    """A flat dataclass of every setting under its flag, for HfArgumentParser (which reads one level of fields)."""
    spec = []
    for group, item in option_fields():
        hints = get_type_hints(GROUPS[group] if group else TrainConfig)
        metadata = {k: v for k, v in item.metadata.items() if k != "flag"}  # the rest goes to argparse as is
        spec.append((flag_of(item), hints[item.name],
                     field(default=item.default, default_factory=item.default_factory, metadata=metadata)))
    return dataclasses.make_dataclass("TrainOptions", spec)


TrainOptions = options_class()

# The settings by what they are about, by flag: --help shows them in these groups, in this order (every setting in
# exactly one; tests/test_preflight.py holds it).
HELP_GROUPS = {
    "what to train": ["preset", "methods", "method", "method_config", "allow_large_adapter", "base_model",
                      "tokenizer", "data", "seed", "seeds"],
    "where it goes": ["output_dir", "overwrite", "resume", "report_to"],
    "training": ["prompt_template", "max_source_length", "max_target_length", "max_train_samples",
                 "max_eval_samples", "learning_rate", "num_train_epochs", "max_steps", "batch_size", "eval_batch_size",
                 "gradient_accumulation_steps", "warmup_ratio", "weight_decay", "logging_steps", "eval_steps",
                 "save_steps", "precision", "tiny_pretrain_steps", "energy"],
    **{group.__doc__: [flag_of(f) for f in dataclasses.fields(group)] for group in GROUPS.values()},
}


class OneLineParser(HfArgumentParser):
    """argparse's own refusals (a value of the wrong type, a choice it does not know) as a ConfigError: one line;
    TrainConfig's options in HELP_GROUPS' groups."""

    def error(self, message):
        raise ConfigError(f"{message} (--help lists every option)")

    def _add_dataclass_arguments(self, dtype):
        if dtype is not TrainOptions:
            return super()._add_dataclass_arguments(dtype)
        hints = get_type_hints(dtype)
        fields = {f.name: f for f in dataclasses.fields(dtype)}
        for title, names in HELP_GROUPS.items():
            group = self.add_argument_group(title)
            for name in names:
                fields[name].type = hints[name]  # what HfArgumentParser does before parsing a field
                self._parse_dataclass_field(group, fields[name])


def parse_options(config_class, argv: Optional[list[str]], description: str = ""):
    """The dataclass `config_class` from the command line; an option it does not have is refused, not ignored."""
    parser = OneLineParser(config_class, description=description)
    cfg, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise ConfigError(f"unknown option(s) {' '.join(unknown)[:200]}; --help lists every option.")
    return cfg


def check_counts(cfg, names: tuple, optional: tuple = ()) -> None:
    """Each named field is a whole number >= 1 (the optional ones when given)."""
    for name in names + tuple(n for n in optional if getattr(cfg, n) is not None):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} must be 1 or more (got {getattr(cfg, name)})")


def parse_config(argv: Optional[list[str]] = None, description: str = "") -> TrainConfig:
    list_fields = {f.name for f in dataclasses.fields(TrainOptions) if str(f.type).startswith("list")}
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parse_options(TrainOptions, merge_repeated_flags(argv, list_fields), description)
    return config_from(dataclasses.asdict(options))


def serving_dialogues_of(cfg: TrainConfig) -> int:
    """--serving_dialogues, else the preset's."""
    return first_set(cfg.evaluation.serving_dialogues, PRESETS[cfg.preset].serving_dialogues)


def eval_limit_of(cfg: TrainConfig) -> Optional[int]:
    """--eval_limit, else the preset's (None: every test dialogue)."""
    return first_set(cfg.evaluation.limit, PRESETS[cfg.preset].eval_limit)


def run_folder_of(cfg: TrainConfig) -> Path:
    """--output_dir, else artifacts/<preset>."""
    return Path(cfg.output_dir or Path("artifacts") / cfg.preset)


def first_set(*values):
    """The first value that is not None (0 is a value: --batch_size 0 is refused, not taken for "unset")."""
    return next((v for v in values if v is not None), None)


def check_output_dir(cfg: TrainConfig) -> None:
    """The run folder can be made and written: not an existing file, under a folder this user can write."""
    folder = run_folder_of(cfg).absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output_dir {folder} is an existing file, not a folder; choose another path.")
    if enclosing := next((p for p in folder.parents if (p / RUN_JSON).is_file()), None):
        raise ConfigError(f"--output_dir {folder} lies inside the run folder {enclosing}, whose folders hold its "
                          "methods and evaluation; choose a folder outside any run.")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:  # root passes every os.access check, and some filesystems (/proc, read-only mounts) refuse anyway: try it
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write-check-"))
    except OSError as e:
        raise ConfigError(f"--output_dir {folder}: cannot create folders in {existing} ({e.strerror}); "
                          "choose another path.") from None


def resolve(cfg: TrainConfig, h: Hyper) -> TrainConfig:
    """Fill unset fields from the preset and the method's settings `h` for it, and validate; returns a new config."""
    if cfg.preset not in PRESETS:
        raise ConfigError(f"--preset {cfg.preset!r} is unknown; choose one of {', '.join(PRESETS)}.")
    p = PRESETS[cfg.preset]
    given_batch = cfg.batch_size is not None
    r = dataclasses.replace(
        cfg,
        base_model=cfg.base_model or p.base_model,
        data=cfg.data or p.data,
        output_dir=str(run_folder_of(cfg)),
        learning_rate=first_set(cfg.learning_rate, h.learning_rate),
        num_train_epochs=first_set(cfg.num_train_epochs, h.num_train_epochs),
        batch_size=first_set(cfg.batch_size, p.batch_size, h.batch_size),
        gradient_accumulation_steps=(p.gradient_accumulation if not given_batch and cfg.gradient_accumulation_steps
                                     == 1 else cfg.gradient_accumulation_steps),
        warmup_ratio=first_set(cfg.warmup_ratio, h.warmup_ratio),
        logging_steps=first_set(cfg.logging_steps, p.logging_steps),
        eval_steps=first_set(cfg.eval_steps, p.eval_steps),
        max_train_samples=first_set(cfg.max_train_samples, p.max_train_samples),
        max_eval_samples=first_set(cfg.max_eval_samples, p.max_eval_samples),
        evaluation=dataclasses.replace(cfg.evaluation, limit=eval_limit_of(cfg)),
    )
    r.eval_batch_size = first_set(r.eval_batch_size, 2 * r.batch_size)
    r.save_steps = first_set(r.save_steps, r.eval_steps)
    for name in ("learning_rate", "num_train_epochs", "warmup_ratio", "weight_decay"):
        if not math.isfinite(getattr(r, name)):
            raise ConfigError(f"--{name} must be a finite number (got {getattr(r, name)})")
    counts = ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps", "eval_steps",
              "save_steps", "max_target_length", "seeds", "sweep_eval_dialogues")
    optional_counts = ("max_train_samples", "max_eval_samples", "eval_limit")  # None = all rows
    options = options_of(r)
    for name in counts + tuple(n for n in optional_counts if options[n] is not None):
        if options[name] < 1:
            raise ConfigError(f"--{name} must be 1 or more (got {options[name]})")
    checks = [
        (r.learning_rate > 0, f"--learning_rate must be > 0 (got {r.learning_rate})"),
        (r.max_steps == -1 or r.max_steps > 0, f"--max_steps must be > 0, or -1 for off (got {r.max_steps})"),
        (r.num_train_epochs > 0 or r.max_steps > 0, "--num_train_epochs or --max_steps must be > 0"),
        (0 <= r.warmup_ratio < 1, f"--warmup_ratio must be in [0, 1) (got {r.warmup_ratio})"),
        (r.weight_decay >= 0, f"--weight_decay must be >= 0 (got {r.weight_decay})"),
        (0 < r.max_source_length <= MAX_SOURCE_TOKENS,
         f"--max_source_length must be in 1..{MAX_SOURCE_TOKENS} for T5 (got {r.max_source_length})"),
        (r.tiny_pretrain_steps >= 0, "--tiny_pretrain_steps must be >= 0"),
        (not (r.sweep.over and cfg.learning_rate is not None),
         f"--learning_rate {cfg.learning_rate} fixes the rate and --sweep lr searches for it: give one of them"),
        (prompt_problem(r.prompt_template) is None,
         f"--prompt_template {r.prompt_template[:60]!r}: {prompt_problem(r.prompt_template)}"),
        (not (r.resume and r.overwrite), "--resume and --overwrite contradict each other; give one"),
        (r.precision in ("auto", "bf16", "fp32"), f"--precision {r.precision!r}: use auto, bf16 or fp32 "
                                                  "(fp16 overflows in T5)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return r
