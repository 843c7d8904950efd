"""Loading DialogSum-shaped data into plain pandas frames, one row per (dialogue, reference summary).

Sources (`--data`):
  hub        the Hub dataset knkarthick/dialogsum (needs internet)
  sample     the bundled sample written by training/sample_data.py (offline)
  FOLDER     DialogSum's original layout (dialogsum.{train,dev,test}.jsonl, test rows with summary1..3)
             or {train,validation|dev,test}.{jsonl,csv} with `dialogue` and `summary` columns
  FILE       one .jsonl/.csv file: used for training, with a deterministic 5% held out for evaluation

Every frame has the columns id, dialogue, summary, topic. Rows with an empty dialogue or summary are skipped and
counted; anything else malformed stops with a DataError naming the file, line/row and field.
"""

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from contract.protocol import DEFAULT_PROMPT

HUB_DATASET = "knkarthick/dialogsum"
SPLITS = ("train", "validation", "test")
FILE_STEMS = {
    "train": ["dialogsum.train", "train"],
    "validation": ["dialogsum.dev", "validation", "dev"],
    "test": ["dialogsum.test", "test"],
}


class DataError(ValueError):
    """Data that cannot be used; the message names the file, line/row and field, and what to do."""


@dataclass
class LoadedData:
    splits: dict[str, pd.DataFrame]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_text(path: Path) -> str:
    """The file as UTF-8; invalid bytes are an error naming the line where they are."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}). "
                        "Save the file as UTF-8.") from None


def read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl or .csv file as dicts; a row number (1-based, as an editor shows lines) in each error."""
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n} is not valid JSON ({e.msg}). Fix or remove that line.") from e
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {n} is not a JSON object with fields such as 'dialogue'.")
            rows.append(row)
        return rows
    if path.suffix == ".csv":
        text = read_text(path)
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            return []
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: not a readable CSV file ({e}).") from e
        return frame.to_dict("records")
    raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl or .csv.")


def to_long_frame(rows: list[dict], path: Path) -> tuple[pd.DataFrame, int]:
    """Normalise rows to (id, dialogue, summary, topic), expanding summary1..3; returns (frame, skipped rows)."""
    if not rows:
        raise DataError(f"{path}: the file has no rows.")
    first = rows[0]
    ref_fields = sorted(k for k in first if k.startswith("summary") and k[7:].isdigit()) or ["summary"]
    for column in ["dialogue", ref_fields[0]]:
        if column not in first:
            raise DataError(f"{path}: row 1 has no '{column}' field (found: {', '.join(first)}). "
                            "Each row needs 'dialogue' and 'summary' (or summary1..N).")
    out, skipped = [], 0
    for n, row in enumerate(rows, 1):
        dialogue = text_field(row, "dialogue", n, path)
        row_id = str(row.get("id") or row.get("fname") or f"{path.stem}_{n}")
        for ref_field in ref_fields:
            summary = text_field(row, ref_field, n, path)
            if not dialogue or not summary:
                skipped += 1
                continue
            topic = row.get("topic") or row.get("topic" + ref_field[7:]) or ""
            out.append({"id": row_id, "dialogue": dialogue, "summary": summary, "topic": str(topic)})
    if not out:
        raise DataError(f"{path}: no usable rows: all {len(rows)} have an empty 'dialogue' or "
                        f"'{ref_fields[0]}'. Fill those fields, or point --data at another file.")
    return pd.DataFrame(out), skipped


def text_field(row: dict, name: str, n: int, path: Path) -> str:
    """A row's text field, stripped ('' = empty, skipped and counted by the caller). A missing field or one that
    is not text (a number, a list) is an error: silently skipping it could drop most of a file."""
    if name not in row:
        raise DataError(f"{path}: row {n} has no '{name}' field (found: {', '.join(map(str, row)) or 'nothing'}). "
                        "Every row needs it; give it an empty string to skip that row on purpose.")
    value = row[name]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{path}: row {n}, field '{name}' is a {type(value).__name__} ({str(value)[:40]!r}), not "
                        "text. Write it as a JSON string.")
    return value.strip()


def find_split_files(folder: Path) -> dict[str, Path]:
    found = {}
    for split, stems in FILE_STEMS.items():
        for stem in stems:
            for suffix in (".jsonl", ".csv"):
                if (folder / f"{stem}{suffix}").exists() and split not in found:
                    found[split] = folder / f"{stem}{suffix}"
    return found


def hold_out(frame: pd.DataFrame, fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by dialogue id (never one dialogue on both sides), deterministic for a seed."""
    ids = pd.Series(frame["id"].unique()).sample(frac=1.0, random_state=seed)
    n_held = max(1, int(round(len(ids) * fraction)))
    held = set(ids.iloc[:n_held])
    mask = frame["id"].isin(held)
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def fill_missing_splits(data: LoadedData) -> LoadedData:
    """Make train/validation/test exist, saying out loud what stands in for a missing split."""
    s = data.splits
    if "train" not in s:
        if "validation" not in s:
            raise DataError(f"{data.source}: found neither a train nor a validation split to train on.")
        s["train"], s["validation"] = hold_out(s.pop("validation"), 0.1)
        data.notes.append(f"no train split in {data.source}: training on 90% of the validation split "
                          f"({len(s['train'])} rows) and evaluating on the other 10%; fine for trying the "
                          "pipeline, not comparable with results trained on DialogSum's train split")
    if "validation" not in s:
        s["train"], s["validation"] = hold_out(s["train"], 0.05)
        data.notes.append(f"no validation split in {data.source}: holding out 5% of train "
                          f"({len(s['validation'])} rows) for evaluation during training")
    if "test" not in s:
        s["test"] = s["validation"]
        data.notes.append(f"no test split in {data.source}: the final evaluation uses the validation split")
    return data


def load_local(path: Path) -> LoadedData:
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder. Give a DialogSum folder, a .jsonl/.csv file, "
                        "'sample' or 'hub'.")
    files = {"train": path} if path.is_file() else find_split_files(path)
    if not files:
        raise DataError(f"{path}: no data files found. Expected dialogsum.train.jsonl/dialogsum.dev.jsonl/"
                        "dialogsum.test.jsonl or train/validation/test .jsonl/.csv files.")
    data = LoadedData(splits={}, source=str(path))
    for split, file in files.items():
        data.splits[split], data.skipped[split] = to_long_frame(read_records(file), file)
    return check_not_empty(fill_missing_splits(data))


def check_not_empty(data: LoadedData) -> LoadedData:
    """After holding out and skipping, every split needs rows; say how many were read and skipped, and why."""
    for split, frame in data.splits.items():
        if frame.empty:
            raise DataError(f"{data.source}: the {split} split is empty ({sum(data.skipped.values())} rows skipped "
                            f"for an empty dialogue or summary; {'; '.join(data.notes) or 'no split was held out'}). "
                            "Training needs at least 2 dialogues with both fields: add rows or give a folder with "
                            "train and validation files.")
    return data


def load_hub(name: str = HUB_DATASET) -> LoadedData:
    from datasets import load_dataset  # imported here: only the Hub path needs it at load time

    try:
        dsd = load_dataset(name)
    except Exception as e:  # the Hub raises many types (connection, offline mode, missing repo)
        raise DataError(f"could not load the Hub dataset '{name}' ({type(e).__name__}: {e}). Without internet "
                        "use --data sample, or --data PATH to a DialogSum folder.") from e
    data = LoadedData(splits={}, source=f"hub:{name}")
    for split in SPLITS:
        data.splits[split], data.skipped[split] = to_long_frame(dsd[split].to_list(), Path(f"{name}/{split}"))
    return data


def load_sample() -> LoadedData:
    from training.sample_data import sample_splits

    return LoadedData(splits=sample_splits(), source="sample", skipped={s: 0 for s in SPLITS})


def load_data(source: str) -> LoadedData:
    """`source` is 'hub', 'sample', or a path (see the module docstring)."""
    if source == "hub":
        return load_hub()
    if source == "sample":
        return load_sample()
    return load_local(Path(source))


def format_prompt(dialogue: str, template: str = DEFAULT_PROMPT) -> str:
    return template.format(dialogue=dialogue)


def group_references(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per dialogue with its list of references and its (first) topic, in first-seen order."""
    grouped = frame.groupby("id", sort=False).agg(dialogue=("dialogue", "first"), references=("summary", list),
                                                  topic=("topic", "first"))
    return grouped.reset_index()


def first_dialogues(source: str, split: str, limit: Optional[int] = None) -> pd.DataFrame:
    """The split's dialogues with their references (the first `limit` of them; None: all)."""
    dialogues = group_references(load_data(source).splits[split])
    return dialogues.iloc[:limit].reset_index(drop=True) if limit else dialogues
