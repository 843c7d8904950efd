"""The methods registry as a capability table, generated (never typed): what trains, trainable parameters on
flan-t5-base and on the tiny preset, served in one mixed batch or not, merges into the base or not, needs CUDA,
the paper. Every figure is measured on a model built here (the tiny T5 for real, flan-t5-base on the meta device:
shapes only, no memory).

    python -m training.catalogue --base_config ../shared/models/flan-t5-base-config   # docs/catalogue.md's table
    python -m training.catalogue                                                       # flan-t5-base's from the Hub
    python -m training.catalogue --base_config ... --core_run artifacts/tiny          # the README's methods table
"""

import argparse
from pathlib import Path

import pandas as pd
from transformers import AutoConfig

from contract.files import EVAL_METRICS, METHOD_METRICS, method_metrics, read_run_file
from training.capabilities import TINY_CONFIG, merges, mixed_batch, wrapped
from training.methods import BUILTIN, CANNOT_TRAIN, CORE, LEFT_OUT, Method
from training.modeling import count_parameters


def trainable_on(method: Method, config) -> int:
    """Trainable parameters, counted on the meta device (shapes only); BOFT builds index tensors from values,
    which the meta device has not, so it is built for real (a second or two)."""
    try:
        return count_parameters(wrapped(method, config, "meta"))["trainable"]
    except RuntimeError:
        return count_parameters(wrapped(method, config))["trainable"]


def table(base_config=None) -> pd.DataFrame:
    """One row per built-in method, core ones first."""
    rows = []
    for name, method in BUILTIN.items():
        base = trainable_on(method, base_config) if base_config else None
        rows.append({"method": name, "core": name in CORE, "what trains": method.why,
                     "trainable (flan-t5-base)": base,
                     "trainable (tiny, 1,000 tokens)": count_parameters(wrapped(method, TINY_CONFIG))["trainable"],
                     "one mixed batch": mixed_batch(method), "merges into the base": method.peft is None or
                     merges(method), "needs CUDA": method.needs_cuda, "paper": method.paper})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def cell(value):
        if isinstance(value, bool):
            return "yes" if value else "—"
        if value is None or value != value:
            return "—"
        if isinstance(value, (int, float)):
            return f"{int(value):,}"
        return f"[paper]({value})" if str(value).startswith("http") else str(value)

    shown = frame.assign(method=[f"`{m}`" + (" (core)" if c else "") for m, c in zip(frame["method"], frame["core"])])
    shown = shown.drop(columns="core")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    left_out = {**CANNOT_TRAIN, **LEFT_OUT}
    lines += ["", "Left out: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()) + "."]
    return "\n".join(lines)


def peft_summary(method: Method) -> str:
    """The method's adapter_config.json in one cell: its peft type and the fields that shape it."""
    if method.peft is None:
        return "—"
    shown = {k: v for k, v in method.peft.items() if k not in ("task_type", "peft_type", "bias")}
    fields = [f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items()]
    quantized = ["(4-bit nf4 base)"] if method.quantize_4bit else []
    return " ".join([f"`{method.peft['peft_type']}`", *fields, *quantized])


CORE_COLUMNS = ["method", "what trains", "peft config (adapter_config.json)", "trainable (flan-t5-base)",
                "tiny run at the preset rate: trainable / train time / ROUGE-1 [95% CI]"]


def measured(method: Method, run_dir: Path, scores: dict, base_rouge: float) -> str:
    """A core method's figures in a tiny run: trainable parameters, training seconds, per-row ROUGE-1 [95% CI]
    (`scores`: the run's evaluation, per-row scores by model)."""
    metrics_file = run_dir / method.name / METHOD_METRICS
    if not metrics_file.exists():
        return "needs CUDA: skipped on CPU" if method.needs_cuda else "not in this run"
    metrics = read_run_file(run_dir, method_metrics(method.name))
    rouge = scores[method.name]["rouge1"]
    below = " (below base)" if rouge["mean"] < base_rouge else ""
    return (f"{metrics['parameters']['trainable']:,} / {metrics['cost']['train_seconds']:.0f} s / "
            f"{rouge['mean']:.3f} [{rouge['ci_low']:.3f}, {rouge['ci_high']:.3f}]{below}")


def core_table(base_config, run_dir: Path | None = None) -> str:
    """The README's table of the core methods: the registry's facts, and with `run_dir` (a tiny run, evaluated)
    what each measured there."""
    scores = read_run_file(run_dir, EVAL_METRICS)["scores"]["per_row"] if run_dir else {}
    base_rouge = scores.get("base", {}).get("rouge1", {}).get("mean", 0.0)
    lines = ["| " + " | ".join(CORE_COLUMNS) + " |", "|" + "---|" * len(CORE_COLUMNS)]
    for name in CORE:
        method = BUILTIN[name]
        cells = [f"`{name}`", method.why, peft_summary(method), f"{trainable_on(method, base_config):,}",
                 measured(method, run_dir, scores, base_rouge) if run_dir else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    if "base" in scores:
        rouge = scores["base"]["rouge1"]
        base = f"— / — / {rouge['mean']:.3f} [{rouge['ci_low']:.3f}, {rouge['ci_high']:.3f}]"
        lines.append(f"| base (no fine-tuning) | — | — | — | {base} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_config", default="google/flan-t5-base",
                        help="flan-t5-base's config: a Hub id or a folder (../shared/models/flan-t5-base-config)")
    parser.add_argument("--core_run", type=Path, help="print the README's core-methods table instead, with the "
                                                      "figures of this evaluated tiny run (artifacts/tiny)")
    args = parser.parse_args(argv)
    config = AutoConfig.from_pretrained(args.base_config)
    print(core_table(config, args.core_run) if args.core_run else markdown(table(config)))


if __name__ == "__main__":
    main()
