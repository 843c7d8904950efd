"""P1: evaluation generation, the project's path (batched, sorted by length) vs the lab's loop (tokenize one
dialogue, generate, decode, repeat), on the same dialogues, greedy. Reports examples/s and how many outputs match.

    python benchmarks/p1_eval_generation.py            # 64 DialogSum test dialogues, 200 new tokens (the lab's)
"""

import time

import torch
from common import base_arguments, load_setup, random_model, record

from training.data import format_prompt
from training.generation import generate


def lab_loop(model, tok, prompts, max_new_tokens):
    outputs = []
    with torch.inference_mode():
        for p in prompts:
            input_ids = tok(p, return_tensors="pt").input_ids
            ids = model.generate(input_ids=input_ids, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
            outputs.append(tok.decode(ids[0], skip_special_tokens=True).strip())
    return outputs


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    n, new = (6, 8) if args.smoke else (args.n, args.max_new_tokens)
    s = load_setup(n, args.smoke)
    print(s.source, flush=True)
    model = random_model(s.config)
    prompts = [format_prompt(d) for d in s.dialogues]
    start = time.perf_counter()
    ours = generate(model, s.tokenizer, prompts, batch_size=args.batch_size, max_new_tokens=new)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    lab = lab_loop(model, s.tokenizer, prompts, new)
    lab_s = time.perf_counter() - start
    same = sum(a == b for a, b in zip(ours, lab))
    print(f"identical outputs: {same}/{len(prompts)}")
    record("P1", len(prompts) / ours_s, len(prompts) / lab_s, "examples/s", ">= 8x", args.results,
           identical_outputs=f"{same}/{len(prompts)}", setup=s.source, max_new_tokens=new, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
