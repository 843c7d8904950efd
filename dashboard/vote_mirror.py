"""Votes that outlive a Space's restart: a private Hub dataset mirrors the vote store.

    VOTES_DATASET=you/flan-t5-votes python app.py --run hf://you/run        # or --votes_dataset you/flan-t5-votes

A Space's disk is wiped on every restart. Every battle, vote and named-summary request (hashes only) the store
records is appended as one JSON line to <folder>/votes-<process>.jsonl; huggingface_hub's CommitScheduler commits
that folder to the dataset every `minutes` (append-only files: a commit never rewrites another process's lines),
and once more when the app gets SIGTERM (a restart or rebuild), before it exits. At start-up the dataset's lines
are read back into the SQLite store (rows already there are left as they are), so the ratings are the same.
A crash (no SIGTERM) can lose the votes acknowledged since the last commit: at most `minutes`.
"""

import json
import os
import time
import uuid
from pathlib import Path

PUSH_MINUTES = 1.0          # how often the mirror commits: the most a crash can lose
PUSH_TIMEOUT_SECONDS = 60   # the last commit on SIGTERM waits this long at most


class VoteMirror:
    def __init__(self, repo_id: str, folder: Path, minutes: float = PUSH_MINUTES):
        from huggingface_hub import CommitScheduler

        self.repo_id, self.minutes = repo_id, minutes
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"votes-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        self.scheduler = CommitScheduler(repo_id=repo_id, repo_type="dataset", folder_path=self.folder, every=minutes,
                                         private=True, allow_patterns=["*.jsonl"])

    def record(self, kind: str, row: dict) -> None:
        """Append one record (kind: battle, vote or named); flushed to disk before the vote is acknowledged."""
        line = json.dumps({"kind": kind, **row}, ensure_ascii=False)
        with self.scheduler.lock, open(self.file, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def push_now(self) -> None:
        """Commit what is not committed yet (SIGTERM, normal exit)."""
        self.scheduler.trigger().result(timeout=PUSH_TIMEOUT_SECONDS)
        self.scheduler.stop()


def read_back(repo_id: str) -> tuple[list, int]:
    """Every record in the dataset (none yet: an empty list), and how many lines were not JSON (a line torn by a
    crash mid-write, say): those are skipped, the rest read. Whether a record is usable is VoteStore.merge's call."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=["*.jsonl"]))
    except RepositoryNotFoundError:
        return [], 0
    return read_lines(sorted(folder.glob("*.jsonl")))


def read_lines(paths: list[Path]) -> tuple[list, int]:
    records, bad = [], 0
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad += 1
    return records, bad
