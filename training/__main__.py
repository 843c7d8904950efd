"""The whole experiment in one command: full fine-tuning, then LoRA, then evaluation of base, full and LoRA.

    python -m training --preset tiny            # offline demo: a few minutes on 2 CPU cores
    python -m training --preset flan-t5-base    # the real thing (GPU, internet for the Hub model and data)

Takes every option of the recipes (see `python -m training.full_finetune --help`); the evaluation runs with its
defaults on the run folder (run `python -m training.evaluate --help` for its options, e.g. a --limit).
"""

import os
from pathlib import Path

from training import evaluate, full_finetune, lora_finetune
from training.config import parse_config


def main(argv=None) -> None:
    cfg = parse_config(argv, description=__doc__)
    run_dir = full_finetune.run(cfg)
    lora_finetune.run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process evaluates
        evaluate.run(evaluate.EvalConfig(run=str(Path(run_dir)), prompt_template=cfg.prompt_template,
                                         max_source_length=cfg.max_source_length))


if __name__ == "__main__":
    main()
