"""One worker that owns the models and serves requests that arrive together with shared `generate` calls.

Why a worker of our own: Gradio's `batch=True` refuses generator (streaming) handlers, and transformers'
`TextIteratorStreamer` takes one row. Here each request is a Job; the worker takes the first waiting job, collects
whatever else arrives within `max_wait` seconds (up to `max_rows` rows), and serves each group of jobs with equal
settings by:
  - ONE mixed-batch call per mixed group (LoRA, GLoRA, RoAd: each a module tree on the shared weights) for every
    job's rows of that type, base rows riding with the first group (peft's adapter_names),
  - ONE call per other model (full, DoRA, IA³, prompt/prefix tuning, ...) for the jobs that asked for it.
A `RowStreamer` splits each decoding step's tokens by row and hands each job its growing text.

The calls themselves run in a backend chosen at start-up (dashboard/backends.py): in this process (CPU, an
ordinary GPU), or inside one @spaces.GPU call per batch on a ZeroGPU Space. The batcher hands it plain data (token
ids) and gets plain data back (token ids, seconds), so the same plan serves both.

What the threads share, and why that is safe:
  - Greedy calls of a group overlap on two lanes in the local backend (backends.py says why that is safe).
  - Sampling jobs are never merged with others and are served one call after another, while nothing else runs:
    each seeds torch's global RNG and draws from it exactly as it would alone, so a seeded request gives the same
    text whatever else is waiting.
  - The fast tokenizer is shared by the worker and by request threads (checking truncation, decoding streamed
    ids): a Rust tokenizer raises "Already borrowed" when two threads use it with different truncation or
    padding, so every use goes through `SerialTokenizer`, one at a time. Only the worker's thread encodes and
    decodes for generation: nothing tokenizes inside a forked ZeroGPU call.
  - The call counter is updated under a lock.
Batched greedy equals unbatched greedy (tested).
"""

import contextvars
import ctypes
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional

from contract.protocol import MAX_SOURCE_TOKENS
from dashboard.backends import Call, choose_backend

MAX_ROWS = 48             # rows (request x model) one generate call may batch across waiting requests
MAX_WAIT_SECONDS = 0.05   # the longest a request waits for others to share its generate calls

@dataclass
class Summary:
    """One model's answer to one request (or why it could not answer)."""
    model: str
    text: str = ""
    seconds: float = 0.0
    tokens: int = 0
    shared_call: bool = False   # generated in one batched call with other rows (models or requests); seconds = its
    error: Optional[str] = None
    backend: str = ""           # what wrote it: "exact" (PyTorch) or "int8" (CTranslate2); see dashboard/backends.py


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
    on_tokens: Optional[Callable[[str, list], None]] = None  # (model, token ids so far), on the worker's thread
    future: Future = field(default_factory=Future)
    results: dict = field(default_factory=dict)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)  # the request's (ZeroGPU quota)


@dataclass
class Row:
    job: Job
    model: str


STOP = object()  # put on a batcher's queue: its worker ends


class Batcher:
    def __init__(
        self,
        loaded,
        tokenizer: SerialTokenizer,
        max_rows: int = MAX_ROWS,
        max_wait: float = MAX_WAIT_SECONDS,
        backend=None,
    ):
        """max_rows bounds one call's batch; max_wait is the longest a request waits for company (seconds);
        backend: where calls run (default: chosen for this machine by backends.choose_backend)."""
        self.loaded, self.tokenizer, self.max_rows, self.max_wait = loaded, tokenizer, max_rows, max_wait
        self.backend = backend or choose_backend(loaded, tokenizer.special_ids)
        self.jobs: "queue.Queue[Job]" = queue.Queue()
        self.calls = 0  # generate calls made: how much the batching saved is visible in tests
        self.calls_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # requests per collected batch (benchmarks report it)
        threading.Thread(target=self.work, name="batcher", daemon=True).start()

    def submit(self, prompt: str, settings, models: list[str], on_tokens=None) -> Future:
        job = Job(prompt, settings, list(models), on_tokens)
        self.jobs.put(job)
        return job.future

    def stop(self) -> None:
        """The worker ends once the jobs before this call are served (an app replaced by a newer one)."""
        self.jobs.put(STOP)

    def collect(self) -> Optional[list[Job]]:
        """The first waiting job, and every job that follows it within max_wait of the previous one (people
        clicking together arrive spread out), for at most 4 x max_wait in all: a lone request waits max_wait.
        None: stop."""
        first = self.jobs.get()
        if first is STOP:
            return None
        batch, rows = [first], len(first.models)
        start = time.monotonic()
        deadline = start + self.max_wait
        while rows < self.max_rows:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is STOP:  # served after this batch
                self.jobs.put(STOP)
                break
            batch.append(job)
            rows += len(job.models)
            deadline = min(start + 4 * self.max_wait, time.monotonic() + self.max_wait)
        self.batch_sizes.append(len(batch))
        return batch

    def work(self):
        while (batch := self.collect()) is not None:
            groups: dict = {}
            for job in batch:  # like settings together; a sampling job always alone
                key = (job.settings, id(job)) if job.settings.do_sample else job.settings
                groups.setdefault(key, []).append(job)
            for jobs in groups.values():
                self.serve_or_say_why(jobs)
            if self.jobs.empty():
                release_freed_memory()

    def serve_or_say_why(self, jobs: list[Job]) -> None:
        """Serve the jobs together; if that fails (a model error, or on ZeroGPU the first visitor's quota or no
        free GPU), serve each alone, so one visitor's failure never costs the others their summaries. A job that
        still fails gets its models' summaries with the reason, in one line: the worker never stops, nobody hangs."""
        try:
            self.serve(jobs)
            return
        except Exception as e:
            failure = e
        for job in jobs:
            job.results.clear()
            try:
                if len(jobs) > 1:
                    self.serve([job])
                    continue
            except Exception as e:
                failure = e
            why = f"generation failed: {' '.join(str(failure).split()) or type(failure).__name__}"[:400]
            job.future.set_result({m: Summary(m, error=why) for m in job.models})

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
        """Encode each planned call's rows, let the backend generate them, stream and decode what comes back."""
        settings = jobs[0].settings
        planned = self.plan(jobs)
        calls = [self.encode(group, rows) for group, _, rows in planned]
        for event in self.backend(calls, settings, jobs[0].context):
            if event[0] == "tokens":
                _, i, row, ids = event
                r = planned[i][2][row]
                if r.job.on_tokens:
                    r.job.on_tokens(r.model, ids)
            else:
                _, i, outputs, seconds = event
                self.finish(planned[i][2], outputs, seconds)
        for job in jobs:
            job.future.set_result(job.results)

    def encode(self, group: Optional[str], rows: list[Row]) -> Call:
        enc = self.tokenizer.encode([r.job.prompt for r in rows], truncation=True, max_length=MAX_SOURCE_TOKENS,
                                    padding=True)
        adapters = ["__base__" if r.model == "base" else r.model for r in rows] if group is not None else None
        return Call(group, None if group is not None else rows[0].model, enc["input_ids"], enc["attention_mask"],
                    adapters, stream=any(r.job.on_tokens for r in rows))

    def finish(self, rows: list[Row], outputs: list[list[int]], seconds: float) -> None:
        with self.calls_lock:
            self.calls += 1
        shared = len({r.model for r in rows}) > 1 or len({id(r.job) for r in rows}) > 1
        for r, ids in zip(rows, outputs):
            r.job.results[r.model] = Summary(
                r.model,
                self.tokenizer.decode(ids),
                seconds,
                len(ids),
                shared_call=shared,
                backend=self.backend.written_by(r.model, r.job.settings),
            )


LIBC = ctypes.CDLL("libc.so.6") if sys.platform == "linux" else None


def release_freed_memory() -> None:
    """When the queue runs dry: glibc keeps in its heap what a burst of requests freed; malloc_trim hands it back
    to the system (a burst's freed heap would otherwise stay with the process; a call is cheap)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)
