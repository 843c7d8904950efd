"""P5/P6 on one GPU: what full FT, LoRA and the evaluation of flan-t5-base cost, with DialogSum's real shapes.

    python benchmarks/gpu_training_cost.py                 # H100/H200, about 5 minutes, no network
    python benchmarks/gpu_training_cost.py --smoke         # tiny sizes on CPU: checks the script runs

Needs only torch, transformers and peft. The model is the flan-t5-base architecture with its own (untied) lm_head,
as the real checkpoint, with random weights: speed and memory do not depend on the values. Batches are random
token ids with the token lengths of DialogSum (benchmarks/dialogsum_token_lengths.json, made from ../shared by
make_token_lengths.py), grouped by length as the training recipe's sampler does.

Why a hand-written step loop instead of Seq2SeqTrainer: the GPU machine has no `datasets`, and the loop does
exactly what the Trainer does per step for our recipe (bf16 autocast over fp32 weights, fused AdamW, dynamic
padding to a multiple of 8), without data-loading noise in the timing.

P5 (training): examples/s, peak memory, model FLOPs utilisation (MFU) and the implied time of one 12,460-example
epoch, for full FT and LoRA (r=32 on q,v), at the preset's batch size and larger ones.
P6 (evaluation): base, full and LoRA summaries of the 500 test dialogues (= the 1,500 test rows, 3 references
each: one generation per dialogue serves all three rows), greedy, batched by length, bf16 weights; random weights
never emit </s>, so each row stops at the length of the lab's real output for that row (a logits processor forces
</s> there): the decode lengths of real models, not 200 tokens of noise.
"""

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, LogitsProcessor, LogitsProcessorList, T5Config

HERE = Path(__file__).resolve().parent
EPOCH_EXAMPLES = 12_460
# google/flan-t5-base's published config.json (the facts that matter for shapes)
FLAN_T5_BASE = dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                    vocab_size=32128, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6,
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
SMOKE = dict(FLAN_T5_BASE, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


def build_model(config: dict, device: str, dtype=torch.float32):
    model = AutoModelForSeq2SeqLM.from_config(T5Config(**config)).to(device=device, dtype=dtype)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())  # untied, as the checkpoint
    return model


def add_lora(model):
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(model, LoraConfig(r=32, lora_alpha=32, lora_dropout=0.05, target_modules=["q", "v"],
                                            task_type=TaskType.SEQ_2_SEQ_LM))


def length_grouped_batches(src: list[int], tgt: list[int], batch: int, n_batches: int, seed: int = 0):
    """Like transformers' LengthGroupedSampler: shuffle, cut mega-batches of 50 batches, sort each by length."""
    rng = random.Random(seed)
    idx = [rng.randrange(len(src)) for _ in range(batch * n_batches)]
    out = []
    for m in range(0, len(idx), 50 * batch):
        mega = sorted(idx[m:m + 50 * batch], key=lambda i: -src[i])
        out += [mega[k:k + batch] for k in range(0, len(mega), batch)]
    rng.shuffle(out)
    return [([min(src[i], 512) for i in b], [min(tgt[i], 128) for i in b]) for b in out[:n_batches]]


def make_batch(src_lens, tgt_lens, device, vocab=32000):
    def pad(lengths, fill):
        width = math.ceil(max(lengths) / 8) * 8
        ids = torch.full((len(lengths), width), fill, dtype=torch.long)
        for row, n in enumerate(lengths):
            ids[row, :n] = torch.randint(3, vocab, (n,))
        return ids

    input_ids = pad(src_lens, 0)
    labels = pad(tgt_lens, -100)
    return {"input_ids": input_ids.to(device), "attention_mask": (input_ids != 0).long().to(device),
            "labels": labels.to(device)}


def part_params(model) -> tuple[int, int]:
    """Parameters applied per input token (encoder blocks) and per output token (decoder blocks + lm_head)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    enc = sum(p.numel() for p in base.encoder.block.parameters())
    dec = sum(p.numel() for p in base.decoder.block.parameters()) + base.lm_head.weight.numel()
    return enc, dec


def forward_flops(enc_params, dec_params, src_lens, tgt_lens, d_attn, layers) -> float:
    """Matmul FLOPs of one forward pass: 2 per parameter per token, plus attention scores and mixing."""
    total = 0.0
    for s, t in zip(src_lens, tgt_lens):
        total += 2 * enc_params * s + 2 * dec_params * t
        total += layers * 4 * d_attn * (s * s + t * t + t * s)  # enc self, dec self, cross
    return total


def train_cost(kind, config, device, batch, steps, warmup, lengths, peak_tflops, compile_model=False):
    torch.manual_seed(0)
    model = build_model(config, device)
    if kind == "lora":
        model = add_lora(model)
    model.train()
    warm_start = time.perf_counter()
    if compile_model:  # fewer, fused kernels: the eager step is bound by kernel launches, not by FLOPs
        model = torch.compile(model, dynamic=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device == "cuda")
    batches = length_grouped_batches(lengths["dev_prompt"], lengths["dev_summary"], batch, warmup + steps)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    flops, examples = 0.0, 0
    enc_p, dec_p = part_params(model)
    d_attn, layers = config["num_heads"] * config["d_kv"], config["num_layers"]
    for i, (src, tgt) in enumerate(batches):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        b = make_batch(src, tgt, device, config["vocab_size"] - 200)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            examples += len(src)
            # full: forward + backward for activations and weights = 3x forward; LoRA: no weight grads = 2x
            flops += (3 if kind == "full" else 2) * forward_flops(enc_p, dec_p, src, tgt, d_attn, layers)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    warmup_seconds = start - warm_start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    del model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    eps = examples / seconds
    achieved = flops / seconds / 1e12
    return {"kind": kind, "batch": batch, "steps": steps, "compiled": compile_model, "warmup_seconds": warmup_seconds,
            "examples_per_second": eps,
            "epoch_seconds": EPOCH_EXAMPLES / eps, "peak_memory_gib": peak / 2**30,
            "achieved_tflops": achieved, "mfu": achieved / peak_tflops if peak_tflops else None,
            "trainable": trainable, "total": total, "loss": float(loss.detach())}


class EosAtLength(LogitsProcessor):
    """Forces </s> when a row reaches its target length: real decode lengths from random weights."""

    def __init__(self, lengths, prompt_len=1):
        self.lengths = torch.tensor(lengths)
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores):
        done = (input_ids.shape[1] - self.prompt_len + 1) >= self.lengths.to(scores.device)
        scores[done] = -float("inf")
        scores[done, 1] = 0.0
        return scores


def eval_cost(config, device, lengths, batch, n_dialogues):
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    shared = get_peft_model(build_model(config, device, dtype), LoraConfig(
        r=32, lora_alpha=32, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM)).eval()
    full = build_model(config, device, dtype).eval()
    src = lengths["test_prompt"][:n_dialogues]
    results = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    total_start = time.perf_counter()
    for name in ("base", "lora", "full"):
        out_lens = lengths["lab_output"][name][0::3][:n_dialogues]  # the lab's output for each test dialogue
        order = sorted(range(len(src)), key=lambda i: -src[i])
        start = time.perf_counter()
        for k in range(0, len(order), batch):
            rows = order[k:k + batch]
            b = make_batch([min(src[i], 512) for i in rows], [1] * len(rows), device, config["vocab_size"] - 200)
            processors = LogitsProcessorList([EosAtLength([max(2, out_lens[i]) for i in rows])])
            model = full if name == "full" else shared
            with torch.inference_mode():
                if name == "base":
                    with shared.disable_adapter():
                        model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                       max_new_tokens=200, do_sample=False, num_beams=1, logits_processor=processors)
                else:
                    model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=200,
                                   do_sample=False, num_beams=1, logits_processor=processors)
        if device == "cuda":
            torch.cuda.synchronize()
        results[name] = {"seconds": time.perf_counter() - start, "dialogues": len(src),
                         "mean_output_tokens": sum(out_lens) / len(out_lens)}
    results["total_seconds"] = time.perf_counter() - total_start
    results["peak_memory_gib"] = (torch.cuda.max_memory_allocated() / 2**30) if device == "cuda" else 0
    return results


def result_rows(report: dict, command: str) -> list[dict]:
    """results.jsonl rows: P5 full vs LoRA (LoRA as 'baseline' is the other method, not the lab), P6 vs its goal."""
    import datetime as dt

    common = {"device": report["device"], "date": dt.date.today().isoformat(), "command": command}
    rows = []
    for batch in sorted({r["batch"] for r in report["training"]}):
        full, lora = (next(r for r in report["training"] if r["batch"] == batch and r["kind"] == k)
                      for k in ("full", "lora"))
        rows.append({"benchmark": "P5", "ours": full["epoch_seconds"], "baseline": lora["epoch_seconds"],
                     "ratio": full["epoch_seconds"] / lora["epoch_seconds"], "unit": "s per 12,460-example epoch "
                     "(ours = full FT, baseline = LoRA)", "goal": "full FT <= 30 s", "batch": batch,
                     "mfu_full": full["mfu"], "mfu_lora": lora["mfu"], "peak_gib_full": full["peak_memory_gib"],
                     "peak_gib_lora": lora["peak_memory_gib"], **common})
    if "evaluation" in report:
        e = report["evaluation"]
        rows.append({"benchmark": "P6", "ours": e["total_seconds"], "baseline": 60.0, "ratio": e["total_seconds"] / 60,
                     "unit": "s for 500 test dialogues (1,500 rows) x 3 models (baseline = the 60 s goal)",
                     "goal": "<= 60 s", **common})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes, any device: checks it runs")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64], help="training batch sizes")
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per measurement")
    parser.add_argument("--eval-batch", type=int, default=128, help="generation batch for P6")
    parser.add_argument("--out", type=Path, default=None, help="also write the results JSON here")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for the training steps")
    parser.add_argument("--skip-eval", action="store_true", help="training measurements only")
    parser.add_argument("--results", type=Path, default=None, help="append P5/P6 rows to this results.jsonl")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = SMOKE if args.smoke else FLAN_T5_BASE
    if device == "cpu" and not args.smoke:
        print("no GPU: run with --smoke on CPU, or on a GPU machine")
        return 2
    lengths = json.loads((HERE / "dialogsum_token_lengths.json").read_text())
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    steps, warmup = (2, 1) if args.smoke else (args.steps, 8)
    batches = [4] if args.smoke else args.batches
    report = {"device": name, "torch": torch.__version__, "peak_bf16_tflops": peak, "training": []}
    print(f"device: {name} (peak bf16 {peak} TFLOP/s)", flush=True)
    for batch in batches:
        for kind in ("full", "lora"):
            r = train_cost(kind, config, device, batch, steps, warmup, lengths, peak, args.compile)
            report["training"].append(r)
            print(f"P5 {kind:4} batch {batch:3}{' compiled' if args.compile else ''}: "
                  f"{r['examples_per_second']:8.1f} ex/s, epoch {r['epoch_seconds']:7.1f} s, "
                  f"peak {r['peak_memory_gib']:5.1f} GiB, {r['achieved_tflops']:6.1f} TFLOP/s, "
                  f"MFU {r['mfu'] or 0:.1%}, trainable {r['trainable']:,}/{r['total']:,}", flush=True)
    # the compute floor: one epoch's model FLOPs at the GPU's peak
    with torch.device("meta"):  # shapes only
        enc_p, dec_p = part_params(build_model(config, "meta"))
    src, tgt = lengths["dev_prompt"], lengths["dev_summary"]
    per_example = (
        3
        * forward_flops(
            enc_p, dec_p, [min(s, 512) for s in src], tgt, config["num_heads"] * config["d_kv"], config["num_layers"]
        )
        / len(src)
    )
    if peak:
        report["epoch_floor_seconds"] = EPOCH_EXAMPLES * per_example / (peak * 1e12)
        print(f"P5 compute floor for one epoch of full FT at peak: {report['epoch_floor_seconds']:.1f} s")
    n = 8 if args.smoke else 500
    if args.skip_eval:
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
        return 0
    report["evaluation"] = eval_cost(config, device, lengths, 4 if args.smoke else args.eval_batch, n)
    e = report["evaluation"]
    print(f"P6 evaluation of {n} dialogues ({3 * n} test rows), three models: {e['total_seconds']:.1f} s "
          f"(base {e['base']['seconds']:.1f}, lora {e['lora']['seconds']:.1f}, full {e['full']['seconds']:.1f}); "
          f"peak {e['peak_memory_gib']:.1f} GiB", flush=True)
    text = json.dumps(report, indent=2)
    if args.results:
        with open(args.results, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in result_rows(report, " ".join(["python", *sys.argv])))
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
