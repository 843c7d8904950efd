"""What training and the dashboard must agree on besides file names: the facts both halves read from here.

A run records the prompt and input length it was trained and evaluated with (metrics.json); these are the
defaults a run falls back on, and the limits of FLAN-T5 itself.
"""

import string
from typing import Optional

DEFAULT_PROMPT = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


def prompt_problem(template: str) -> Optional[str]:
    """Why `template` cannot be a prompt (None: it can): it must hold the field {dialogue} and no other ({{ and }}
    for literal braces), since it is filled with str.format(dialogue=...)."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:
        return f"it is not a format string ({e}; write {{{{ and }}}} for literal braces)"
    others = sorted({"{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                     for name, spec, conversion in fields if name != "dialogue" or spec or conversion})
    if others:
        return f"it may hold only the field {{dialogue}}, not {', '.join(others)[:80]} (write {{{{ }}}} for braces)"
    if not fields:
        return "it must contain {dialogue}"
    return None
MAX_SOURCE_TOKENS = 512          # FLAN-T5's input length: longer inputs are truncated (and counted) everywhere
MAX_NEW_TOKENS = 200             # the lab's summary length cap: evaluation's and the app's default
BASE = "base"                    # the untouched base model's name (in eval/metrics.json, the API, the page)
BASE_LABEL = "Base (no fine-tuning)"
# peft 0.21 serves a mixed batch (adapter_names, one adapter per row) exactly for these types only; DoRA (LoRA
# with use_dora) and AdaLoRA raise, prompt learning refuses, every other type ignores it SILENTLY.
MIXED_BATCH_TYPES = ("LORA", "GLORA", "ROAD")
TRAINING_CURVES = (
    "tensorboard"  # <run>/tensorboard/<method>[/trials/..|/seeds/..]: --report_to tensorboard's event files
)
RESERVED_FOLDERS = frozenset({"base", "eval", "checkpoints", TRAINING_CURVES})  # folders of a run that are not methods


def on_zero_gpu() -> bool:
    """A Hugging Face ZeroGPU Space sets SPACES_ZERO_GPU (the `spaces` package reads the same variable)."""
    import os

    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


# What `--preset quick` (real flan-t5-small on 256 training dialogues) takes from `python app.py --preset quick` to
# serving on 2 CPU cores: its goal (benchmarks/p10_quick_preset.py measures it; results.jsonl holds the figures)
QUICK_PRESET_TIME = "under 20 minutes on 2 CPU cores"
