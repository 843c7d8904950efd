"""Write benchmarks/dialogsum_token_lengths.json: token counts (no text) of DialogSum dev/test prompts and
summaries, and of the original lab's predicted summaries, with the real FLAN-T5 tokenizer. The GPU benchmark reads
it so its random-token batches have DialogSum's real shapes without needing ../shared on the GPU machine.

    python benchmarks/make_token_lengths.py      # needs ../shared
"""

import json
import sys
from pathlib import Path

import pandas as pd
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from training.data import format_prompt, group_references, load_data  # noqa: E402


def main() -> None:
    tok = AutoTokenizer.from_pretrained(SHARED / "models" / "flan-t5-tokenizer")
    data = load_data(str(SHARED / "data" / "dialogsum"))
    dev = pd.concat([data.splits["train"], data.splits["validation"]])
    test = group_references(data.splits["test"])
    lengths = lambda texts: [len(ids) for ids in tok(list(texts))["input_ids"]]  # noqa: E731
    lab = pd.read_csv(SHARED / "data" / "lab-reference" / "dialogue-summary-training-results.csv")
    out = {
        "tokenizer": "FLAN-T5 (32,100 tokens), with </s>; prompts use the lab's template",
        "dev_prompt": lengths(format_prompt(d) for d in dev["dialogue"]),
        "dev_summary": lengths(dev["summary"]),
        "test_prompt": lengths(format_prompt(d) for d in test["dialogue"]),
        # the lab's outputs on the test set, one per row (1,500): how long real models' summaries are
        "lab_output": {k: lengths(lab[c].fillna("")) for k, c in (("base", "original_model_summaries"),
                       ("full", "instruct_model_summaries"), ("lora", "peft_model_summaries"))},
    }
    path = Path(__file__).with_name("dialogsum_token_lengths.json")
    path.write_text(json.dumps(out))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"wrote {path}: dev prompt mean {mean(out['dev_prompt']):.0f}, summary mean {mean(out['dev_summary']):.0f},"
          f" test prompt mean {mean(out['test_prompt']):.0f}, >512: {sum(x > 512 for x in out['test_prompt'])}")


if __name__ == "__main__":
    main()
