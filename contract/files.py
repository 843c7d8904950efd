"""The artifacts contract in code: where each file of a run lives, and schema-checked JSON reading and writing.

Training writes through `write_json`, the dashboard reads through `read_json`; both validate against the JSON
Schemas in contract/schema/, so a file that one side would reject never passes the other. See contract/README.md.
"""

import json
import math
import os
import shutil
import tempfile
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Optional

import jsonschema

from contract.protocol import RESERVED_FOLDERS

SCHEMA_DIR = Path(__file__).parent / "schema"
RUN_JSON = "run.json"
METHOD_METRICS = "metrics.json"   # <run>/<method>/metrics.json: written last, so its presence = method complete
MODEL = "model"                   # <run>/<method>/model: a whole checkpoint (full fine-tuning)
ADAPTER = "adapter"               # <run>/<method>/adapter: a peft adapter (adapter_config.json + weights)
SWEEP_JSON = "sweep.json"         # <run>/<method>/sweep.json: its learning-rate sweep (training --sweep lr)
EVAL = "eval"                     # <run>/eval: metrics.json + predictions.jsonl, swapped in as one folder
EVAL_METRICS = f"{EVAL}/metrics.json"
EVAL_PREDICTIONS = f"{EVAL}/predictions.jsonl"
EVAL_INT8 = f"{EVAL}/int8.json"   # int8 (CTranslate2) vs exact on the evaluation's dialogues: training/int8_quality.py
EVAL_SERVING = f"{EVAL}/serving.json"  # each model's serving cost in each form it supports: training/serving_cost.py
CARD = "README.md"                # <run>/README.md: the model card (python -m training.publish writes it)
SEEDS = "seeds"                   # <run>/<method>/seeds/seed-N: a method's extra seeds, laid out as the method
VOTES_FILE = "votes.sqlite"       # <run>/votes.sqlite: the blind votes (unless --votes_db); never part of the run
# The files save_pretrained writes for a checkpoint, an adapter or a tokenizer (model-00001-of-00002.safetensors and
# the like match the patterns): the only files of a weights folder that belong to the run
WEIGHT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
                "model.safetensors.index.json", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "spiece.model")
MAX_JSON_INT = 2**63 - 1          # no count a run writes comes near this; a bigger one is not a run's value
PREDICTION_FIELDS = ("id", "dialogue", "references", "outputs", "rouge")


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
                            f"contract/schema/{schema}.json; re-run the step that writes it.") from e
    return doc


def schema_for(name: str) -> str:
    if name == RUN_JSON:
        return "run.v1"
    if name == EVAL_METRICS:
        return "eval_metrics.v1"
    if name == EVAL_INT8:
        return "int8.v1"
    if name == EVAL_SERVING:
        return "serving.v1"
    if name.endswith(f"/{METHOD_METRICS}"):
        return "train_metrics.v1"
    if name.endswith(f"/{SWEEP_JSON}"):
        return "sweep.v2"
    raise KeyError(f"{name} is not a JSON file of the artifacts contract")


def non_finite(value, where: str = "") -> Optional[str]:
    """The path ('a/b/0') of the first NaN or Infinity in a JSON-shaped value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (where or "(top level)")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if found := non_finite(item, f"{where}/{key}" if where else str(key)):
            return found
    return None


def write_json(path: Path, doc: dict, schema: Optional[str]) -> None:
    """Validate (unless schema is None: internal bookkeeping files), then write atomically (temp file in the same
    folder + rename): readers never see half a file."""
    if schema:
        validate(doc, schema, str(path))
    if where := non_finite(doc):
        raise ArtifactError(f"{path}: field '{where}' is not a finite number; a run file never holds NaN or "
                            "Infinity (JSON has neither): leave the figure out and say why instead.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a run file holds")


def bounded_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"the integer {text[:30]} is beyond 64 bits")
    return value


def parse_run_json(text: str):
    """json.loads without what JSON itself does not allow but Python's parser accepts (NaN, Infinity) and without
    integers past 64 bits: values no run writes, which would break every reader after this one (charts, tables,
    the API's JSON)."""
    return json.loads(text, parse_constant=refuse_constant, parse_int=bounded_int)


def read_json(path: Path, schema: str) -> dict:
    try:
        doc = parse_run_json(Path(path).read_text())
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing.") from e
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError, as are the two refusals above
        raise ArtifactError(
            f"{path}: not valid JSON ({e}); the file is corrupt, re-run the step that writes it."
        ) from e
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path}: expected a JSON object.")
    return validate(doc, schema, str(path))


def read_run_file(run_dir: Path, name: str) -> dict:
    """One of the contract's JSON files (RUN_JSON, EVAL_METRICS, method_metrics(name)) of a run folder, validated."""
    return read_json(Path(run_dir) / name, schema_for(name))


def write_run_file(run_dir: Path, name: str, doc: dict) -> None:
    write_json(Path(run_dir) / name, doc, schema_for(name))


def save_folder_atomically(folder: Path, save) -> None:
    """Call save(tmp) on a temporary sibling folder, then rename it into place: `folder` is complete or absent,
    whenever the process is killed (a leftover temporary folder is invisible and removed by the next save)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    save(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def read_evaluation(run_dir: Path) -> tuple[dict, list[dict]]:
    """eval/metrics.json and eval/predictions.jsonl, checked to be ONE complete evaluation: every line whole,
    as many dialogues as the metrics say, every scored model in every line. Anything else is an ArtifactError
    that says what is wrong and how to mend it (evaluate again)."""
    run_dir = Path(run_dir)
    metrics = read_run_file(run_dir, EVAL_METRICS)
    path = run_dir / EVAL_PREDICTIONS
    again = f"Run `python -m training.evaluate --run {run_dir}` again."
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: missing or unreadable beside {EVAL_METRICS} ({e}). {again}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArtifactError(
                f"{path}: line {n} is not valid JSON ({e.msg}): the file was cut short. {again}"
            ) from None
        missing = [f for f in PREDICTION_FIELDS if f not in row] if isinstance(row, dict) else list(PREDICTION_FIELDS)
        models = set(metrics["models"])
        if missing or not models <= set(row["outputs"]):
            raise ArtifactError(
                f"{path}: line {n} lacks {', '.join(missing) or 'outputs of ' + ', '.join(sorted(models))}. {again}"
            )
        rows.append(row)
    if len(rows) != metrics["n_dialogues"]:
        raise ArtifactError(f"{path} holds {len(rows)} dialogues but {EVAL_METRICS} scored {metrics['n_dialogues']}: "
                            f"they are not one evaluation. {again}")
    return metrics, rows


def without_paths(text: str, run_dir: Path) -> str:
    """`text` with the run folder's location (as given and resolved) replaced by its name."""
    run_dir = Path(run_dir)
    for location in sorted({str(run_dir.resolve()), str(run_dir.absolute()), str(run_dir)}, key=len, reverse=True):
        if location not in (".", ""):
            text = text.replace(location, run_dir.name)
    return text


def method_metrics(name: str) -> str:
    return f"{name}/{METHOD_METRICS}"


def list_methods(run_dir: Path) -> list[str]:
    """The complete methods of a run, from the folder itself: every <method>/metrics.json. full and lora first
    (the original pair), then the others in the order they were trained."""
    found = [p.parent for p in Path(run_dir).glob(f"*/{METHOD_METRICS}")
             if p.parent.name not in RESERVED_FOLDERS and not p.parent.name.startswith(".")]  # .eval.tmp: no method
    first = {"full": 0, "lora": 1}
    return [p.name for p in sorted(found, key=lambda p: (first.get(p.name, 2), (p / METHOD_METRICS).stat().st_mtime,
                                                          p.name))]


def method_weights(run_dir: Path, name: str) -> Path:
    """A method's saved weights: <method>/model (a whole checkpoint) or <method>/adapter (peft)."""
    folder = Path(run_dir) / name
    return folder / MODEL if (folder / MODEL).exists() else folder / ADAPTER


# What "complete" means, in one place: a method is complete once its metrics.json is written (list_methods); a run
# has trained once one complete method has its weights; it is finished once its evaluation scores every complete
# method (what the app serves unasked, and what `python -m training --resume` does not evaluate again).

def has_trained(run_dir: Path) -> bool:
    """run.json and at least one complete method with its weights."""
    run_dir = Path(run_dir)
    return (run_dir / RUN_JSON).exists() and any(method_weights(run_dir, m).exists() for m in list_methods(run_dir))


def evaluation_problem(run_dir: Path) -> Optional[str]:
    """Why the run's evaluation is not current (None: eval/ holds one whole evaluation, metrics and predictions
    agreeing, that scores every complete method)."""
    if not (Path(run_dir) / EVAL_METRICS).exists():
        return "no evaluation"
    try:
        metrics, _ = read_evaluation(Path(run_dir))
    except ArtifactError as e:
        return f"the evaluation is not usable ({e})"
    missing = [m for m in list_methods(run_dir) if m not in metrics["scores"]["per_row"]]
    return f"the evaluation does not score {', '.join(missing)}" if missing else None


def is_finished(run_dir: Path) -> bool:
    return has_trained(run_dir) and evaluation_problem(run_dir) is None


def method_parts(run_dir: Path, name: str) -> list[Path]:
    """A complete method's folder and each of its complete extra seeds' folders (laid out as the method)."""
    seeds = (Path(run_dir) / name / SEEDS).glob(f"seed-*/{METHOD_METRICS}")
    return [Path(run_dir) / name, *sorted(p.parent for p in seeds)]


def run_files(run_dir: Path) -> list[str]:
    """Exactly the files a run consists of, relative to the run folder: run.json, the card, the base and tokenizer
    when they live in the run (tiny), each complete method's metrics.json, sweep.json and weights, its complete
    extra seeds likewise, and the evaluation. An allow-list: anything else in the folder (votes and their keys,
    journals, locks, checkpoints, half-written or moved-aside folders, files a person left there) is not part of
    the run and is never published. Weights are the files a checkpoint or adapter is saved as (WEIGHT_FILES)."""
    run_dir = Path(run_dir)
    run = read_run_file(run_dir, RUN_JSON)
    files = [RUN_JSON, CARD]
    for location in dict.fromkeys((run["base_model"], run["tokenizer"])):
        inside = (run_dir / location).resolve()
        if inside.is_dir() and inside.is_relative_to(run_dir.resolve()) and inside != run_dir.resolve():
            files += weight_files(run_dir, run_dir / location)
    for name in list_methods(run_dir):
        for part in method_parts(run_dir, name):
            files += [
                str((part / f).relative_to(run_dir)) for f in (METHOD_METRICS, SWEEP_JSON) if (part / f).is_file()
            ]
            files += weight_files(run_dir, part / MODEL) + weight_files(run_dir, part / ADAPTER)
    files += [EVAL_METRICS, EVAL_PREDICTIONS, EVAL_INT8, EVAL_SERVING]
    return [f for f in dict.fromkeys(files) if is_run_file(run_dir, run_dir / f)]


def is_run_file(run_dir: Path, path: Path) -> bool:
    """A regular file, not a symlink, whose real location is inside the run (a symlinked folder could lead out)."""
    return path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(Path(run_dir).resolve())


SHARD, SHARD_INDEX = "model-*-of-*.safetensors", "model.safetensors.index.json"
REQUIRED_WEIGHTS = {MODEL: ("config.json",), ADAPTER: ("adapter_config.json", "adapter_model.safetensors")}


def weight_files(run_dir: Path, folder: Path) -> list[str]:
    """The saved-weight files directly in `folder`: regular files (no symlinks, which could point anywhere) named
    as save_pretrained names them (WEIGHT_FILES), in a folder that is itself inside the run; of the shards, only
    those the folder's index names (a stray shard is not part of the weights)."""
    if folder.is_symlink() or not folder.is_dir() or not folder.resolve().is_relative_to(Path(run_dir).resolve()):
        return []
    indexed = shards_named(folder)
    return sorted(str(p.relative_to(run_dir)) for p in folder.iterdir()
                  if not p.is_symlink() and p.is_file() and any(fnmatch(p.name, w) for w in WEIGHT_FILES)
                  and (not fnmatch(p.name, SHARD) or p.name in indexed))


def shards_named(folder: Path) -> set[str]:
    """The shard files a checkpoint's index names (empty without an index, or with one that cannot be read)."""
    try:
        return set(json.loads((folder / SHARD_INDEX).read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def parameter_count(run_dir: Path, folder: Path) -> Optional[int]:
    """The parameters a checkpoint folder of the run holds, from its safetensors headers (no weights read; tied
    weights are saved once, so this is the model's own count); None where the folder has no readable safetensors."""
    from safetensors import SafetensorError, safe_open

    files = [Path(run_dir) / f for f in weight_files(run_dir, folder) if f.endswith(".safetensors")]
    try:
        total = 0
        for file in files:
            with safe_open(file, framework="numpy") as weights:
                total += sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())
    except (OSError, SafetensorError, ValueError):
        return None
    return total or None


def weights_problem(run_dir: Path, folder: Path) -> Optional[str]:
    """Why a method's weights folder cannot be published whole (None: it can): a symlinked folder or file, a file
    its kind needs, or a shard its index names, missing."""
    where = folder.relative_to(run_dir)
    if folder.is_symlink():
        return f"{where} is a symlink"
    linked = sorted(p.name for p in folder.iterdir()
                    if p.is_symlink() and any(fnmatch(p.name, w) for w in WEIGHT_FILES))
    if linked:
        return f"{where}/{linked[0]} is a symlink"
    needed = [*REQUIRED_WEIGHTS[folder.name], *sorted(shards_named(folder))]
    if folder.name == MODEL and not shards_named(folder):
        needed.append("model.safetensors")
    missing = [f for f in needed if not (folder / f).is_file()]
    return f"{where}/{missing[0]} is missing" if missing else None


def publishing_problems(run_dir: Path) -> list[str]:
    """What keeps a run from being published whole: each complete method's (and extra seed's) metrics.json,
    sweep.json and weights, the base and tokenizer inside the run, and the evaluation, as weights_problem and
    symlinks say. run_files() leaves such parts out; publishing refuses them instead of sending half a method."""
    run_dir = Path(run_dir)
    problems = []
    for name in list_methods(run_dir):
        for part in method_parts(run_dir, name):
            problems += [f"{(part / f).relative_to(run_dir)} is a symlink" for f in (METHOD_METRICS, SWEEP_JSON)
                         if (part / f).is_symlink()]
            folder = part / MODEL if (part / MODEL).exists() or (part / MODEL).is_symlink() else part / ADAPTER
            if not (folder.exists() or folder.is_symlink()):
                problems.append(f"{folder.relative_to(run_dir)} is missing")
            elif problem := weights_problem(run_dir, folder):
                problems.append(problem)
    evaluation = (EVAL_METRICS, EVAL_PREDICTIONS, EVAL_INT8, EVAL_SERVING)
    problems += [f"{f} is a symlink" for f in evaluation if (run_dir / f).is_symlink()]
    return problems


def digest_file(digest, path: Path) -> None:
    """Feed a file's bytes into a hashlib digest, 16 MiB at a time (weights can be many GB)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)


def base_model_location(run_dir: Path, run: dict) -> str:
    """run.json's base_model as something from_pretrained takes: a folder inside the run, or a Hub id/path."""
    inside = Path(run_dir) / run["base_model"]
    return str(inside) if inside.exists() else run["base_model"]


def tokenizer_location(run_dir: Path, run: dict) -> str:
    """run.json's tokenizer, resolved like base_model (a folder inside the run, or a Hub id/path)."""
    return base_model_location(run_dir, {"base_model": run["tokenizer"]})
