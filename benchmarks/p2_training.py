"""P2: training, the project's recipe (dynamic padding, length-grouped batches) vs the lab's (inputs and labels
padded to 512), same examples, same number of optimizer steps, both through Seq2SeqTrainer. Each side runs in its
own process so its peak memory is its own.

    python benchmarks/p2_training.py                  # 8 steps of batch 8 on DialogSum test dialogues

Memory is the process's peak RSS minus its RSS before the model was built: model, optimizer state and
activations, without the interpreter and libraries both sides share. The lab's labels are padded with the pad id;
here they are padded with -100 so both sides optimise the same loss and the reported losses compare.
"""

import json
import subprocess
import sys
import time

import datasets
from common import base_arguments, load_setup, peak_rss_bytes, random_model, record, rss_bytes
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from training.config import TrainConfig
from training.data import format_prompt
from training.trainer import tokenize


def dataset(side: str, setup, n: int):
    import pandas as pd

    frame = pd.DataFrame({"dialogue": setup.dialogues[:n], "summary": setup.summaries[:n]})
    if side == "ours":
        return tokenize(frame, setup.tokenizer, TrainConfig(preset="tiny")).dataset
    tok = setup.tokenizer
    enc = tok([format_prompt(d) for d in frame["dialogue"]], padding="max_length", truncation=True, max_length=512)
    labels = tok(text_target=list(frame["summary"]), padding="max_length", truncation=True, max_length=512)[
        "input_ids"
    ]
    labels = [[t if t != tok.pad_token_id else -100 for t in row] for row in labels]
    return datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                       "labels": labels})


def run_side(side: str, steps: int, batch: int, smoke: bool) -> dict:
    setup = load_setup(steps * batch, smoke)
    before = rss_bytes()
    model = random_model(setup.config).train()
    ds = dataset(side, setup, steps * batch)
    args = Seq2SeqTrainingArguments(output_dir="/tmp/p2-unused", per_device_train_batch_size=batch, max_steps=steps,
                                    learning_rate=3e-4, logging_steps=steps, save_strategy="no", report_to="none",
                                    seed=0, disable_tqdm=True, dataloader_pin_memory=False,
                                    train_sampling_strategy="group_by_length" if side == "ours" else "random")
    collator = DataCollatorForSeq2Seq(setup.tokenizer, model=model, label_pad_token_id=-100)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                             processing_class=setup.tokenizer)
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    return {"examples_per_second": steps * batch / seconds, "memory_bytes": peak_rss_bytes() - before,
            "loss": out.training_loss, "source": setup.source}


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--side", choices=["ours", "lab"], help="internal: run one side in this process")
    args = parser.parse_args()
    steps, batch = (2, 2) if args.smoke else (args.steps, args.batch)
    if args.side:
        print(json.dumps(run_side(args.side, steps, batch, args.smoke)))
        return
    sides = {}
    for side in ("ours", "lab"):
        cmd = [sys.executable, __file__, "--side", side, "--steps", str(steps), "--batch", str(batch)]
        out = subprocess.run(cmd + (["--smoke"] if args.smoke else []), capture_output=True, text=True, check=True)
        sides[side] = json.loads(out.stdout.strip().splitlines()[-1])
        print(side, sides[side], flush=True)
    o, lab = sides["ours"], sides["lab"]
    common = dict(setup=o["source"], steps=steps, batch=batch, loss_ours=o["loss"], loss_lab=lab["loss"])
    record("P2", o["examples_per_second"], lab["examples_per_second"], "examples/s", ">= 2.5x", args.results, **common)
    record("P2", o["memory_bytes"] / 2**20, lab["memory_bytes"] / 2**20, "MiB (peak RSS over pre-model RSS)",
           "<= 0.5x", args.results, **common)


if __name__ == "__main__":
    main()
