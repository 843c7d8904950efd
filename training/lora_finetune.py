"""LoRA as the lab did it (r=32, alpha=32, dropout 0.05 on q and v): `training.peft_finetune --method lora`.

    python -m training.lora_finetune --preset tiny
    python -m training.lora_finetune --preset flan-t5-base --learning_rate 5e-4

Kept so the original command still works; every option of training.peft_finetune applies.
"""

from training.cli import run_cli
from training.config import TrainConfig, parse_config
from training.methods import BUILTIN
from training import peft_finetune


def run(cfg: TrainConfig, callbacks=()):
    return peft_finetune.run(cfg, BUILTIN["lora"], callbacks)


def main(argv=None) -> None:
    run_cli(lambda: run(parse_config(argv, description=__doc__)))


if __name__ == "__main__":
    main()
