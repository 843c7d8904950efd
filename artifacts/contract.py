"""The artifacts contract in code: where each file of a run lives, and schema-checked JSON reading and writing.

Training writes through `write_json`, the dashboard reads through `read_json`; both validate against the JSON
Schemas in artifacts/schema/, so a file that one side would reject never passes the other. See artifacts/README.md.
"""

import json
import os
import tempfile
from functools import cache
from pathlib import Path

import jsonschema

SCHEMA_DIR = Path(__file__).parent / "schema"
RUN_JSON = "run.json"
FULL_MODEL = "full/model"
FULL_METRICS = "full/metrics.json"
LORA_ADAPTER = "lora/adapter"
LORA_METRICS = "lora/metrics.json"
EVAL_METRICS = "eval/metrics.json"
EVAL_PREDICTIONS = "eval/predictions.jsonl"
SCHEMA_FOR = {RUN_JSON: "run.v1", FULL_METRICS: "train_metrics.v1", LORA_METRICS: "train_metrics.v1",
              EVAL_METRICS: "eval_metrics.v1"}


class ArtifactError(ValueError):
    """A run file that is missing, unreadable or breaks its schema; the message names the file and the field."""


@cache
def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


def validate(doc: dict, schema: str, source: str) -> dict:
    try:
        jsonschema.validate(doc, _schema(schema))
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ArtifactError(f"{source}: field '{where}' is invalid: {e.message}. The file does not follow "
                            f"artifacts/schema/{schema}.json; re-run the step that writes it.") from e
    return doc


def write_json(path: Path, doc: dict, schema: str) -> None:
    """Validate, then write atomically (temp file in the same folder + rename): readers never see half a file."""
    validate(doc, schema, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def read_json(path: Path, schema: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing.") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); the file is corrupt, re-run the step that writes it.") from e
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path}: expected a JSON object.")
    return validate(doc, schema, str(path))


def read_run_file(run_dir: Path, name: str) -> dict:
    """Read one of the contract's JSON files (RUN_JSON, FULL_METRICS, ...) of a run folder, validated."""
    return read_json(Path(run_dir) / name, SCHEMA_FOR[name])


def write_run_file(run_dir: Path, name: str, doc: dict) -> None:
    write_json(Path(run_dir) / name, doc, SCHEMA_FOR[name])


def base_model_location(run_dir: Path, run: dict) -> str:
    """run.json's base_model as something from_pretrained takes: a folder inside the run, or a Hub id/path."""
    inside = Path(run_dir) / run["base_model"]
    return str(inside) if inside.exists() else run["base_model"]


def tokenizer_location(run_dir: Path, run: dict) -> str:
    """run.json's tokenizer, resolved like base_model (a folder inside the run, or a Hub id/path)."""
    return base_model_location(run_dir, {"base_model": run["tokenizer"]})
