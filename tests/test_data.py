import json

import pytest

from tests.helpers import SHARED, needs_shared
from training.data import DataError, group_references, load_data, load_local
from training.sample_data import SPLIT_SIZES


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sample_has_three_splits_with_three_references_in_test():
    data = load_data("sample")
    assert len(data.splits["train"]) == SPLIT_SIZES["train"]
    test = group_references(data.splits["test"])
    assert len(test) == SPLIT_SIZES["test"] and all(len(r) == 3 for r in test["references"])
    # the summary depends on the dialogue: its slot words appear in the dialogue
    row = data.splits["train"].iloc[0]
    assert set(row["summary"].lower().split()) & set(row["dialogue"].lower().split())


def test_empty_rows_are_skipped_and_counted(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": f"A: hi {i}", "summary": "A greets."} for i in range(3)] +
                [{"dialogue": "", "summary": "x"}, {"dialogue": "B: yo", "summary": "  "}])
    data = load_local(tmp_path / "train.jsonl")
    assert data.skipped["train"] == 2
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 3


def test_missing_column_names_file_and_field(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": "A: hi", "text": "no summary"}])
    with pytest.raises(DataError, match=r"train\.jsonl: row 1 has no 'summary' field"):
        load_local(tmp_path)


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"dialogue": "a", "summary": "b"}\n{"dialogue": oops}\n')
    with pytest.raises(DataError, match=r"train\.jsonl: line 2 is not valid JSON"):
        load_local(tmp_path)


def test_file_without_usable_rows_is_an_error(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"dialogue": "", "summary": ""}])
    with pytest.raises(DataError, match="no usable rows"):
        load_local(tmp_path)


def test_csv_missing_column(tmp_path):
    (tmp_path / "train.csv").write_text("dialog,summary\nhello,hi\n")
    with pytest.raises(DataError, match=r"train\.csv: row 1 has no 'dialogue' field"):
        load_local(tmp_path)


def test_missing_path_says_what_to_give(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(str(tmp_path / "nope"))


def test_missing_splits_are_announced(tmp_path):
    rows = [{"id": f"d{i}", "dialogue": f"A: line {i}", "summary": f"sum {i}"} for i in range(40)]
    write_jsonl(tmp_path / "dev.jsonl", rows)
    data = load_local(tmp_path)
    assert {"train", "validation", "test"} <= set(data.splits)
    assert any("no train split" in n for n in data.notes) and any("no test split" in n for n in data.notes)
    assert not set(data.splits["train"]["id"]) & set(data.splits["validation"]["id"])


@needs_shared
def test_reads_real_dialogsum_dev_and_test():
    data = load_data(str(SHARED / "data" / "dialogsum"))
    test = group_references(data.splits["test"])
    assert len(test) == 500 and len(data.splits["test"]) == 1500
    assert all(len(r) == 3 for r in test["references"])
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 500  # dev stands in for train
    assert any("no train split" in n for n in data.notes)


@needs_shared
def test_real_tokenizer_loads_offline():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHARED / "models" / "flan-t5-tokenizer")
    assert len(tok) == 32100 and tok.pad_token_id == 0 and tok.eos_token_id == 1
