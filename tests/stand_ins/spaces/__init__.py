"""A STAND-IN for Hugging Face's `spaces` package (ZeroGPU), for tests on a CPU. Not the real thing: it keeps the
contract that ZeroGPU (spaces 0.51.3) imposes on an app, so an app that works here works there:

- `GPU(fn)` / `GPU(duration=...)(fn)`: every call runs in a process FORKED for that call; a sync function's result
  and a sync generator's items come back pickled through a pipe; an exception comes back as a RuntimeError with its
  message; nothing the call changes survives it (the process ends). `duration` (seconds, or a function of the
  call's arguments) is evaluated in the calling process, as ZeroGPU does before it schedules the call, and recorded
  in REQUESTED_DURATIONS.
- Outside a call, a T5 forward pass raises, as CUDA does in ZeroGPU's main process: all model work must happen
  inside a call.
- Quota: the visitor is read from Gradio's request context at the call, as ZeroGPU reads it (here the header
  x-standin-visitor); a visitor named in $STANDIN_OUT_OF_QUOTA (comma list) is refused with ZeroGPU's message.
Only active when SPACES_ZERO_GPU is set (as `spaces` itself is a no-op elsewhere).
"""

import inspect
import multiprocessing
import os
import traceback

MAIN_PID = os.getpid()
REQUESTED_DURATIONS: list = []
CALLS = multiprocessing.get_context("fork").Value("i", 0)  # calls started, counted across forks


def _guard_t5_outside_calls():
    from transformers.models.t5 import modeling_t5

    original = modeling_t5.T5ForConditionalGeneration.forward

    def forward(self, *args, **kwargs):
        if os.getpid() == MAIN_PID:
            raise RuntimeError("ZeroGPU stand-in: a T5 forward pass outside a @spaces.GPU call (no GPU here)")
        return original(self, *args, **kwargs)

    modeling_t5.T5ForConditionalGeneration.forward = forward


def _child(fn, args, kwargs, conn):
    try:
        with CALLS.get_lock():
            CALLS.value += 1
        if inspect.isgeneratorfunction(fn):
            for item in fn(*args, **kwargs):
                conn.send(("item", item))
            conn.send(("end", None))
        else:
            conn.send(("result", fn(*args, **kwargs)))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))
    finally:
        conn.close()
        os._exit(0)


def _refuse_out_of_quota():
    import gradio as gr
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    visitor = (getattr(request, "headers", None) or {}).get("x-standin-visitor")
    if visitor and visitor in os.environ.get("STANDIN_OUT_OF_QUOTA", "").split(","):
        raise gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 0s left). Try again in 23:59:59.",
                       title="ZeroGPU quota exceeded")


def _start(fn, duration, args, kwargs):
    _refuse_out_of_quota()
    REQUESTED_DURATIONS.append(duration(*args, **kwargs) if callable(duration) else (duration or 60))
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_child, args=(fn, args, kwargs, send), daemon=True)
    process.start()
    send.close()
    return process, receive


def _messages(process, receive):
    try:
        while True:
            try:
                kind, value = receive.recv()
            except EOFError:
                raise RuntimeError("ZeroGPU stand-in: the GPU task ended without an answer") from None
            if kind == "error":
                raise RuntimeError(f"ZeroGPU stand-in: the GPU task failed: {value}")
            yield kind, value
            if kind in ("end", "result"):
                return
    finally:
        receive.close()
        process.join(timeout=10)


def GPU(task=None, *, duration=None, size=None, **kwargs):
    if task is None:
        return lambda fn: GPU(fn, duration=duration, size=size)
    if not os.environ.get("SPACES_ZERO_GPU"):
        return task
    if inspect.isgeneratorfunction(task):
        def generator(*args, **kw):
            for kind, value in _messages(*_start(task, duration, args, kw)):
                if kind == "item":
                    yield value
        return generator

    def function(*args, **kw):
        return next(value for kind, value in _messages(*_start(task, duration, args, kw)) if kind == "result")
    return function


if os.environ.get("SPACES_ZERO_GPU"):
    _guard_t5_outside_calls()
