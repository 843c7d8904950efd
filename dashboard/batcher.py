"""One worker that owns the models and serves requests that arrive together with shared `generate` calls.

Why a worker of our own: Gradio's `batch=True` refuses generator (streaming) handlers, and transformers'
`TextIteratorStreamer` takes one row. Here each request is a Job; the worker takes the first waiting job, collects
whatever else arrives within `max_wait` seconds (up to `max_rows` rows), and serves each group of jobs with equal
settings by:
  - ONE mixed-batch call per mixed group (LoRA, GLoRA, RoAd: each a module tree on the shared weights) for every
    job's rows of that type, base rows riding with the first group (peft's adapter_names),
  - ONE call per other model (full, DoRA, IA³, prompt/prefix tuning, ...) for the jobs that asked for it.
A `RowStreamer` splits each decoding step's tokens by row and hands each job its growing text.

What the threads share, and why that is safe:
  - Greedy calls of a group overlap on two lanes (threads): the shared-weights model's calls in one, every other
    model's in the other, so no module is ever called from two threads at once (peft's adapter_names hooks are
    module state). Greedy decoding reads no random state.
  - Sampling jobs are never merged with others and are served in one lane, while nothing else runs: each seeds
    torch's global RNG and draws from it exactly as it would alone, so a seeded request gives the same text
    whatever else is waiting.
  - The fast tokenizer is shared by the lanes and by request threads (checking truncation, decoding streamed
    ids): a Rust tokenizer raises "Already borrowed" when two threads use it with different truncation or
    padding, so every use goes through `SerialTokenizer`, one at a time.
  - The call counter is updated under a lock.
Batched greedy equals unbatched greedy (tested).
"""

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from transformers.generation.streamers import BaseStreamer

from contract.protocol import MAX_SOURCE_TOKENS


@dataclass
class Summary:
    """One model's answer to one request (or why it could not answer)."""
    model: str
    text: str = ""
    seconds: float = 0.0
    tokens: int = 0
    shared_call: bool = False   # generated in one batched call with other rows (models or requests); seconds = its
    error: Optional[str] = None


class SerialTokenizer:
    """The run's tokenizer, used by one thread at a time. Encoding sets the Rust tokenizer's truncation and
    padding state, which another thread's call would find "Already borrowed"; a lock costs microseconds."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.lock = threading.Lock()
        self.special_ids = frozenset(tokenizer.all_special_ids)

    def encode(self, prompts: list[str], **kwargs):
        with self.lock:
            return self.tokenizer(prompts, **kwargs)

    def count(self, prompt: str) -> int:
        """Tokens of the prompt before truncation (is it longer than the models read?)."""
        with self.lock:
            return len(self.tokenizer(prompt, truncation=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        with self.lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass
class Job:
    prompt: str
    settings: object                                   # dashboard.inputs.Settings (frozen: hashable)
    models: list[str]
    on_tokens: Optional[Callable[[str, list], None]] = None  # (model, token ids so far), on the worker's threads
    future: Future = field(default_factory=Future)
    results: dict = field(default_factory=dict)


@dataclass
class Row:
    job: Job
    model: str


class RowStreamer(BaseStreamer):
    """Receives each step's new tokens for the whole batch ([rows]) and calls on_row(row, token ids so far).
    It does not decode: the page decodes a few times a second, not every step of every row."""

    def __init__(self, skip: frozenset, on_row: Callable[[int, list], None], rows: int):
        self.on_row = on_row
        self.ids = [[] for _ in range(rows)]
        self.skip = skip  # special token ids: never shown
        self.started = False

    def put(self, value):
        if not self.started:  # the first call carries the decoder's start tokens, not generated text
            self.started = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if token not in self.skip:
                self.ids[row].append(token)
                self.on_row(row, self.ids[row])

    def end(self):
        pass


class Batcher:
    def __init__(self, loaded, tokenizer: SerialTokenizer, max_rows: int = 48, max_wait: float = 0.05):
        """max_rows bounds one call's batch; max_wait is the longest a request waits for company (seconds)."""
        self.loaded, self.tokenizer, self.max_rows, self.max_wait = loaded, tokenizer, max_rows, max_wait
        self.jobs: "queue.Queue[Job]" = queue.Queue()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="generate")
        self.calls = 0  # generate calls made: how much the batching saved is visible in tests
        self.calls_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # requests per collected batch (benchmarks report it)
        threading.Thread(target=self.work, name="batcher", daemon=True).start()

    def submit(self, prompt: str, settings, models: list[str], on_tokens=None) -> Future:
        job = Job(prompt, settings, list(models), on_tokens)
        self.jobs.put(job)
        return job.future

    def collect(self) -> list[Job]:
        """The first waiting job, and every job that follows it within max_wait of the previous one (people
        clicking together arrive spread out), for at most 4 x max_wait in all: a lone request waits max_wait."""
        first = self.jobs.get()
        batch, rows = [first], len(first.models)
        start = time.monotonic()
        deadline = start + self.max_wait
        while rows < self.max_rows:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(job)
            rows += len(job.models)
            deadline = min(start + 4 * self.max_wait, time.monotonic() + self.max_wait)
        self.batch_sizes.append(len(batch))
        return batch

    def work(self):
        while True:
            batch = self.collect()
            groups: dict = {}
            for job in batch:  # like settings together; a sampling job always alone
                key = (job.settings, id(job)) if job.settings.do_sample else job.settings
                groups.setdefault(key, []).append(job)
            for jobs in groups.values():
                try:
                    self.serve(jobs)
                except Exception as e:  # a failed call fails its requests, never the worker
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(e)

    def plan(self, jobs: list[Job]) -> list[tuple[str, Optional[str], list[Row]]]:
        """(mixed group or None, model called alone or None, its rows), split by max_rows."""
        calls = []
        for group in self.loaded.mixed:
            rows = [Row(j, m) for j in jobs for m in j.models if self.loaded.group_of(m) == group]
            if rows:
                calls.append((group, None, rows))
        for model in dict.fromkeys(m for j in jobs for m in j.models):
            if self.loaded.group_of(model) is None:  # called alone (base too, when no group can carry it)
                calls.append((None, model, [Row(j, model) for j in jobs if model in j.models]))
        return [(g, m, rows[i:i + self.max_rows]) for g, m, rows in calls for i in range(0, len(rows), self.max_rows)]

    def serve(self, jobs: list[Job]):
        settings = jobs[0].settings
        calls = self.plan(jobs)
        if settings.do_sample:
            lanes = [calls]  # sampling: in turn, each call seeded as when served alone
        else:
            # greedy: two lanes overlap, the shared-weights model's calls in one and the other models' in the
            # other. Never two calls on the shared-weights model at once: peft applies adapter_names through hooks
            # on its modules, so overlapping calls would take each other's adapters.
            lanes = [[c for c in calls if c[0] is not None], [c for c in calls if c[0] is None]]
        running = [self.pool.submit(self.run_lane, lane, settings) for lane in lanes if lane]
        for f in running:
            f.result()
        for job in jobs:
            job.future.set_result(job.results)

    def run_lane(self, calls, settings):
        for call in calls:
            self.call(*call, settings)

    @torch.inference_mode()
    def call(self, group: Optional[str], model_name: Optional[str], rows: list[Row], settings):
        loaded, tok = self.loaded, self.tokenizer
        enc = tok.encode([r.job.prompt for r in rows], truncation=True, max_length=MAX_SOURCE_TOKENS, padding=True,
                         return_tensors="pt").to(loaded.device)
        extra = {}
        if group is not None:
            model = loaded.mixed[group]
            extra["adapter_names"] = ["__base__" if r.model == "base" else r.model for r in rows]
        else:
            model = loaded.base if model_name == "base" else loaded.own[model_name]
        if settings.num_beams == 1 and any(r.job.on_tokens for r in rows):  # transformers streams no beam search
            extra["streamer"] = RowStreamer(tok.special_ids, lambda i, ids: rows[i].job.on_tokens and
                                            rows[i].job.on_tokens(rows[i].model, ids), len(rows))
        if settings.do_sample:  # reproducible for a seed; sampling calls never overlap (serve: one lane)
            torch.manual_seed(settings.seed)
        start = time.perf_counter()
        out = model.generate(**enc, **settings.generate_kwargs(), **extra)
        seconds = time.perf_counter() - start
        with self.calls_lock:
            self.calls += 1
        shared = len({r.model for r in rows}) > 1 or len({id(r.job) for r in rows}) > 1
        for i, r in enumerate(rows):
            ids = [int(t) for t in out[i] if int(t) not in tok.special_ids]
            r.job.results[r.model] = Summary(r.model, tok.decode(ids), seconds, len(ids), shared_call=shared)
