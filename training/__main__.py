"""The whole experiment in one command: full fine-tuning, then LoRA, then evaluation of base, full and LoRA.

    python -m training --preset tiny            # offline demo: a few minutes on 2 CPU cores
    python -m training --preset flan-t5-base    # the real thing (GPU, internet for the Hub model and data)

Every option of the recipes applies (see `python -m training.full_finetune --help`); evaluation options are
prefixed in training.evaluate and take their defaults here.
"""

from training import full_finetune, lora_finetune
from training.config import parse_config


def main(argv=None) -> None:
    cfg = parse_config(argv, description=__doc__)
    full_finetune.run(cfg)
    lora_finetune.run(cfg)


if __name__ == "__main__":
    main()
