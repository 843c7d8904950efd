"""Score any predictions file with this project's ROUGE and print the figures as JSON.

    python -m training.score_file predictions.csv --prediction-column peft_model_summaries \
        --reference-column human_baseline_summaries --no-sentence-split

Each row is scored against its own reference (the per-row protocol) and the mean is printed with a 95% bootstrap
interval over rows. --no-sentence-split scores texts as given, as `evaluate`'s rouge did for the lab's figures.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from scoring.rouge import METRICS, Rouge
from scoring.stats import bootstrap_ci
from training.data import DataError, read_records


def score_file(path: Path, prediction_column: str, reference_column: str, split_sentences: bool = True) -> dict:
    if not path.exists():
        raise DataError(f"{path}: no such file.")
    rows = read_records(path)
    if not rows:
        raise DataError(f"{path}: the file has no rows to score.")
    for column in (prediction_column, reference_column):
        if column not in rows[0]:
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(map(str, rows[0]))}).")
    rouge = Rouge(split_sentences=split_sentences)
    per_row = [rouge.score(str(r[reference_column] or ""), str(r[prediction_column] or "")) for r in rows]
    result = {"file": str(path), "rows": len(rows), "prediction_column": prediction_column,
              "reference_column": reference_column, **{k: v for k, v in rouge.describe().items() if k != "metrics"}}
    for k in METRICS:
        mean, low, high = bootstrap_ci(np.array([s[k] for s in per_row]))
        result[k] = {"mean": mean, "ci_low": low, "ci_high": high}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a .csv or .jsonl file with one prediction and reference per row")
    parser.add_argument("--prediction-column", required=True, help="column holding the model's summaries")
    parser.add_argument("--reference-column", required=True, help="column holding the reference summaries")
    parser.add_argument("--no-sentence-split", action="store_true",
                        help="score texts as given (evaluate's behaviour) instead of one sentence per line")
    args = parser.parse_args(argv)
    try:
        result = score_file(args.file, args.prediction_column, args.reference_column, not args.no_sentence_split)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
