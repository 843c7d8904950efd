"""Several runs in one app: each run's name, data and models, and one model set over all of them that Compare and
the API call (the Metrics, Examples and Vote tabs show the first run; the Leaderboard shows every run).

With one run its models keep their plain names (base, full, lora: the API as it always was); with several, a model
is `<run>/<model>` and its label `<label> · <run>`. Runs whose base weights are the same (the same file content,
or the same Hub id) hold ONE copy in memory: contract/loading.py's shared bases.
"""

import re
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from dashboard.inputs import InputError, Settings, chosen_models
from dashboard.run_data import RunData
from dashboard.serving import DEFAULT_MODELS, Models, Request


@dataclass
class ServedRun:
    name: str
    data: RunData
    models: Models


def run_names(folders: list[Path]) -> list[str]:
    """A short, unique name per run: its folder's name, with its parent's where two folders share a name."""
    names = [Path(f).name for f in folders]
    names = [f"{Path(f).parent.name}-{n}" if names.count(n) > 1 else n for f, n in zip(folders, names)]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"two runs are both named {twice[0]!r}; give runs whose folders are named apart.")
    return names


def element_id(key: str) -> str:
    """A model key as an HTML id part: `quick/lora` -> `quick--lora`."""
    return re.sub(r"[^A-Za-z0-9_-]", "--", key)


class ModelSet:
    """The models of every loaded run, called as one: the request is split by run, each run's worker batches its
    part (across requests, as for one run), and the answers come back under the keys asked for."""

    def __init__(self, runs: list[ServedRun]):
        self.runs = runs
        self.qualified = len(runs) > 1
        self.where = {self.key(r, m): (r, m) for r in runs for m in r.models.loaded.models}

    def key(self, run: ServedRun, model: str) -> str:
        return f"{run.name}/{model}" if self.qualified else model

    @property
    def keys(self) -> list[str]:
        return list(self.where)

    def label(self, key: str) -> str:
        run, model = self.where[key]
        return f"{run.data.label(model)} · {run.name}" if self.qualified else run.data.label(model)

    @property
    def errors(self) -> dict[str, str]:
        return {self.key(r, m): why for r in self.runs for m, why in r.models.loaded.errors.items()}

    @property
    def default(self) -> list[str]:
        """What Compare shows unless asked: the first run's base, full and lora (those it has)."""
        first = self.runs[0]
        return [self.key(first, m) for m in DEFAULT_MODELS if m in first.models.loaded.models]

    def decode(self, key: str, ids: list[int]) -> str:
        return self.where[key][0].models.tokenizer.decode(ids)

    def describe(self) -> str:
        return self.runs[0].models.describe()

    def check_keys(self, keys) -> list[str]:
        return chosen_models(keys, self.keys, self.default, "the app")

    def submit(self, text: str, settings: Settings = Settings(), keys=None,
               on_tokens: Optional[Callable[[str, list], None]] = None) -> Request:
        """Validate, then queue one request per run involved; one Request whose result has every key asked."""
        keys = self.check_keys(keys)
        parts = []
        for run in self.runs:
            mine = [m for k, (r, m) in self.where.items() if r is run and k in keys]
            if mine:
                stream = None if on_tokens is None else (lambda m, ids, run=run: on_tokens(self.key(run, m), ids))
                parts.append((run, run.models.submit(text, settings, run.data.prompt_template, mine, stream)))
        return Request(keys, any(p.truncated for _, p in parts), self.joined(parts), {})

    def joined(self, parts: list[tuple[ServedRun, Request]]) -> Future:
        """One future for the requests of several runs: done when all are, with {key: Summary}."""
        joined, left = Future(), [len(parts)]

        def one_done(_):
            left[0] -= 1
            if left[0] == 0:
                try:
                    joined.set_result({self.key(run, m): s for run, p in parts for m, s in p.result().items()})
                except Exception as e:  # a worker's failure reaches the request as it does with one run
                    joined.set_exception(e)

        for _, part in parts:
            part.future.add_done_callback(one_done)
        return joined


def single(data: RunData, models: Models) -> ModelSet:
    return ModelSet([ServedRun(data.folder.name, data, models)])
