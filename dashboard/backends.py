"""Where the batcher's generate calls run: one small interface, chosen once at start-up.

    backend(calls, settings, context) -> iterator of events
        ("tokens", call, row, ids so far)     a streamed row grew (greedy, one beam)
        ("done", call, [ids per row], seconds)
    backend.written_by(model, settings) -> "exact" | "int8"   what wrote that model's summaries

Calls and events are plain data (token ids, names, numbers): they cross a process boundary unchanged.

- `LocalBackend` (CPU, an ordinary GPU): the calls run in this process. Greedy calls overlap on two lanes (threads):
  the shared-weights model's calls in one, every other model's in the other, so no module is ever called from two
  threads at once (peft applies adapter_names through hooks on its modules). Sampling calls run one after another,
  each seeded as when served alone.
- `Int8Backend` (dashboard/int8_backend.py, `--backend int8`): merged models in int8 through CTranslate2, the rest
  as `LocalBackend`.
- `ZeroGPUBackend` (a Hugging Face ZeroGPU Space, SPACES_ZERO_GPU set): all model work happens inside ONE
  `@spaces.GPU` call per batch, a sync generator that ZeroGPU runs in a process forked for that call; its events
  stream back (pickled). The models were placed on the device at start-up, after `import spaces`, as ZeroGPU
  requires; nothing the call changes survives it. The call runs in the context of the batch's first request, so
  ZeroGPU charges that visitor's quota (duration estimated from the batch: DURATION below).
"""

import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from transformers.generation.streamers import BaseStreamer

from contract.protocol import on_zero_gpu

EXACT = "exact"  # what wrote a summary: PyTorch, the model as trained (written_by); int8: dashboard/int8_backend.py


@dataclass
class Call:
    """One generate call, as plain data: a mixed group (one adapter name per row) or one model called alone."""
    group: Optional[str]
    model: Optional[str]
    input_ids: list            # rows of token ids, padded to one length
    attention_mask: list
    adapter_names: Optional[list]
    stream: bool               # report each row's tokens as they come


class RowStreamer(BaseStreamer):
    """Receives each step's new tokens for the whole batch ([rows]) and calls on_row(row, token ids so far).
    It does not decode: the page decodes a few times a second, not every step of every row."""

    def __init__(self, skip: frozenset, on_row, rows: int):
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
                self.on_row(row, list(self.ids[row]))

    def end(self):
        pass


@torch.inference_mode()
def generate(loaded, special_ids: frozenset, index: int, call: Call, settings, emit) -> None:
    """Run one call on `loaded`'s models; emit(event) for its streamed rows and its result."""
    if call.group is not None:
        model, extra = loaded.mixed[call.group], {"adapter_names": call.adapter_names}
    else:
        model, extra = (loaded.base if call.model == "base" else loaded.own[call.model]), {}
    if call.stream and settings.num_beams == 1:  # transformers streams no beam search
        extra["streamer"] = RowStreamer(special_ids, lambda row, ids: emit(("tokens", index, row, ids)),
                                        len(call.input_ids))
    if settings.do_sample:  # reproducible for a seed; sampling calls never overlap
        torch.manual_seed(settings.seed)
    start = time.perf_counter()
    out = model.generate(input_ids=torch.tensor(call.input_ids, device=loaded.device),
                         attention_mask=torch.tensor(call.attention_mask, device=loaded.device),
                         **settings.generate_kwargs(), **extra)
    seconds = time.perf_counter() - start
    emit(("done", index, [[int(t) for t in row if int(t) not in special_ids] for row in out.tolist()], seconds))


def run_calls(loaded, special_ids: frozenset, calls: list[Call], settings, overlap: bool) -> Iterator[tuple]:
    """Every call's events as they happen: greedy calls on two lanes when `overlap`, else one after another."""
    if overlap:
        lanes = [
            [i for i, c in enumerate(calls) if c.group is not None],
            [i for i, c in enumerate(calls) if c.group is None],
        ]
    else:
        lanes = [list(range(len(calls)))]
    return run_lanes(lanes, lambda i, emit: generate(loaded, special_ids, i, calls[i], settings, emit))


def run_lanes(lanes: list[list[int]], run_one) -> Iterator[tuple]:
    """`run_one(call index, emit)` for each lane's calls in turn, the lanes side by side (threads); every event as
    it happens. A failure in a lane is raised once the others are done (the batcher fails that batch's requests)."""
    events: "queue.Queue" = queue.Queue()
    failures = []

    def lane(indices):
        try:
            for i in indices:
                run_one(i, events.put)
        except Exception as e:  # handed to the consumer, which fails this batch's requests
            failures.append(e)
        finally:
            events.put(None)

    lanes = [lane_ for lane_ in lanes if lane_]
    with ThreadPoolExecutor(max_workers=max(1, len(lanes)), thread_name_prefix="generate") as pool:
        for indices in lanes:
            pool.submit(lane, indices)
        finished = 0
        while finished < len(lanes):
            event = events.get()
            if event is None:
                finished += 1
            else:
                yield event
    if failures:
        raise failures[0]


class LocalBackend:
    """The calls run in this process (CPU, an ordinary GPU): today's path and speed."""

    def __init__(self, loaded, special_ids: frozenset):
        self.loaded, self.special_ids = loaded, special_ids

    def __call__(self, calls: list[Call], settings, context=None) -> Iterator[tuple]:
        return run_calls(self.loaded, self.special_ids, calls, settings, overlap=not settings.do_sample)

    def written_by(self, model: str, settings) -> str:
        return EXACT


# --- ZeroGPU --------------------------------------------------------------------------------------------------

SERVED = {}  # the models a ZeroGPU call generates with: set at start-up, inherited by each forked call
SECONDS_PER_STEP = 0.02  # one decoding step of flan-t5-base on a GPU, generously (batch size barely matters)
DURATION = (15, 120)     # seconds requested per call: at least, at most (a visitor's day holds 2 to 40 minutes)


def duration(calls: list[Call], settings) -> int:
    """Seconds to request for a batch, charged up front to the visitor's daily quota: the calls run one after
    another, each up to max_new_tokens decoding steps (x beams), plus 5 s to start."""
    steps = len(calls) * settings.max_new_tokens * settings.num_beams
    return int(min(DURATION[1], max(DURATION[0], 5 + steps * SECONDS_PER_STEP)))


def generate_on_gpu(calls: list[Call], settings) -> Iterator[tuple]:
    """The body of the one @spaces.GPU call: every call of the batch, in turn, its events streamed back."""
    yield from run_calls(SERVED["loaded"], SERVED["special_ids"], calls, settings, overlap=False)


class ZeroGPUBackend:
    """Every batch in one @spaces.GPU call (a process forked per call); the events come back pickled."""

    def __init__(self, loaded, special_ids: frozenset):
        import spaces  # ZeroGPU: imported before any CUDA work (the app imports it first)

        SERVED.update(loaded=loaded, special_ids=special_ids)
        self.call = spaces.GPU(duration=duration)(generate_on_gpu)

    def written_by(self, model: str, settings) -> str:
        return EXACT

    def __call__(self, calls: list[Call], settings, context=None) -> Iterator[tuple]:
        events = self.call(calls, settings) if context is None else context.run(self.call, calls, settings)
        while True:
            try:
                event = next(events) if context is None else context.run(next, events)
            except StopIteration:
                return
            yield event


def choose_backend(loaded, special_ids: frozenset):
    return (ZeroGPUBackend if on_zero_gpu() else LocalBackend)(loaded, special_ids)
