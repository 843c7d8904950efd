"""A model's summaries of the test dialogues, made by jobs of a comparison's queue (training/jobs.py) for the
evaluation to read: <run>/.eval_shards/<model>/block-<i>.json, one file per block of test dialogues.

A block is a run of positions in the order generate() batches the prompts (longest first), a whole number of
generation batches long: a block's batches are exactly those of one process generating every summary, so the
summaries are too. Each shard holds a key of what its summaries depend on (its prompts, the decoding, and the
bytes of the model's weights: the base's, its adapter's, each seed's); the evaluation reads a model's shards only
when current ones cover every test dialogue once, and generates the model's summaries itself otherwise. A shard's
job also scores its summaries (ROUGE scores each dialogue on its own, so a block's scores are those it has among
all): the evaluation reads them when every block scored against the test set's references, so the scoring of many
models is shared by the workers too.
"""

import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Optional

from contract import int8
from contract.files import METHOD_METRICS, SEEDS, method_weights, write_json
from contract.protocol import BASE

SHARDS = ".eval_shards"


def block_size(dialogues_per_job: int, batch_size: int) -> int:
    """--dialogues_per_job rounded up to whole generation batches."""
    return math.ceil(dialogues_per_job / batch_size) * batch_size


def block_count(dialogues: int, dialogues_per_job: int, batch_size: int) -> int:
    return max(1, math.ceil(dialogues / block_size(dialogues_per_job, batch_size)))


def block_of(order: list[int], block: int, size: int) -> list[int]:
    """The test dialogues (indices, ascending) of block number `block`: positions [block x size, + size) of the
    length order."""
    return sorted(order[block * size:(block + 1) * size])


def key_maker(run_dir: Path, loaded, name: str, decoding: list) -> Callable[[list[str]], str]:
    """prompts -> the key of `name`'s summaries of them with this decoding (its weights hashed once, here)."""
    folders = int8.sources(run_dir, loaded.base_path, name)
    if name != BASE:
        seeds = sorted(p.parent for p in (run_dir / name / SEEDS).glob(f"seed-*/{METHOD_METRICS}"))
        folders += [method_weights(seed.parent, seed.name) for seed in seeds]
    weights = int8.source_key(folders)
    return lambda prompts: hashlib.sha256(json.dumps([prompts, decoding, weights]).encode()).hexdigest()


def shard_path(run_dir: Path, name: str, block: int) -> Path:
    return run_dir / SHARDS / name / f"block-{block}.json"


def references_key(references: list[list[str]]) -> str:
    """What a block's scores were scored against: its dialogues' references."""
    return hashlib.sha256(json.dumps(references).encode()).hexdigest()


def write_shard(run_dir: Path, name: str, block: int, shard: dict) -> Path:
    """`shard`: key, indices (the test dialogues it summarises), outputs, cost, seeds ({seed: outputs}),
    references (references_key) and scores ({seed: {protocol: {metric: per-dialogue scores}}}, the served seed's
    and every other's)."""
    path = shard_path(run_dir, name, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, shard, schema=None)
    return path


def current_shard(run_dir: Path, name: str, block: int, key: str) -> bool:
    shard = read_json_or_none(shard_path(run_dir, name, block))
    return shard is not None and shard.get("key") == key


def read_json_or_none(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_shards(run_dir: Path, name: str, prompts: list[str], key_of: Callable[[list[str]], str],
                references: list[list[str]]) -> Optional[dict]:
    """The model's summaries of `prompts` and their cost, put together from its shards when current ones cover
    every prompt exactly once (else None: the evaluation generates them), with their scores where every shard
    scored against these `references` (else "scores" is None: the evaluation scores them)."""
    covered, outputs, parts, seeds, blocks = set(), [None] * len(prompts), [], {}, []
    for path in sorted((run_dir / SHARDS / name).glob("block-*.json")):
        shard = read_json_or_none(path)
        indices = shard.get("indices") if isinstance(shard, dict) else None
        if not isinstance(indices, list) or not all(isinstance(i, int) and 0 <= i < len(prompts) for i in indices):
            continue
        if covered & set(indices) or shard.get("key") != key_of([prompts[i] for i in indices]):
            continue  # another block layout's, or of other weights, prompts or decoding
        covered |= set(indices)
        blocks.append(shard)
        parts.append(shard["cost"])
        for i, text in zip(indices, shard["outputs"]):
            outputs[i] = text
        for seed, texts in shard["seeds"].items():
            seeds.setdefault(seed, [None] * len(prompts))
            for i, text in zip(indices, texts):
                seeds[seed][i] = text
    if len(covered) != len(prompts) or any(None in texts for texts in seeds.values()):
        return None
    return {"outputs": outputs, "cost": joined_cost(parts, len(prompts)), "seeds": seeds,
            "scores": joined_scores(blocks, references)}


def joined_scores(blocks: list[dict], references: list[list[str]]) -> Optional[dict]:
    """{seed: {protocol: {metric: per-dialogue scores}}} put together from the blocks' scores (each dialogue was
    scored on its own), or None where a block scored against other references or holds no scores."""
    if any(b.get("references") != references_key([references[i] for i in b["indices"]]) for b in blocks):
        return None
    joined = {}
    for block in blocks:
        for seed, protocols in block["scores"].items():
            for protocol, metrics in protocols.items():
                for metric, values in metrics.items():
                    column = joined.setdefault(seed, {}).setdefault(protocol, {}).setdefault(
                        metric, [None] * len(references))
                    for i, value in zip(block["indices"], values):
                        column[i] = value
    columns = [c for protocols in joined.values() for metrics in protocols.values() for c in metrics.values()]
    return joined if joined and not any(None in column for column in columns) else None


def joined_cost(parts: list[dict], dialogues: int) -> dict:
    """The generation cost of a model's blocks as one: seconds added up, the peak memory the largest."""
    seconds = sum(p["seconds"] for p in parts)
    cost = {**parts[0], "seconds": seconds, "examples_per_second": dialogues / seconds if seconds else 0.0,
            "peak_memory_bytes": max(p["peak_memory_bytes"] for p in parts)}
    if any("seeds_seconds" in p for p in parts):
        cost["seeds_seconds"] = sum(p.get("seeds_seconds", 0.0) for p in parts)
    return cost
