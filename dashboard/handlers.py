"""What the page and the API do when asked: validate a request, queue it for the models' worker, stream or wait
for the summaries, score them against a reference, and refuse what cannot be served with a message. Tabs lay out
widgets and call these; nothing here knows a widget.
"""

import os
import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import gradio as gr
import pandas as pd

from contract.protocol import MAX_SOURCE_TOKENS
from contract.untrusted import plain
from dashboard import run_data
from dashboard.batcher import Summary
from dashboard.fair_queue import DEFAULT_LIMIT
from dashboard.inputs import CONTROLS, InputError, Settings, check_text
from dashboard.runs import ModelSet, single
from dashboard.serving import DEFAULT_MODELS, Models
from dashboard.votes import VoteError, VoteStore
from scoring import lenses  # the evaluation's failure detectors, on live summaries too
from scoring.rouge import METRICS, Rouge  # the evaluation's exact ROUGE

CONCURRENCY = 16  # requests in flight per endpoint: they wait together for the worker, which batches them
STREAM_EVERY = 0.2  # seconds between two partial updates sent to the page
NOT_IN_RUN = "(not in this run)"
ROUGE = Rouge()


@dataclass
class AppState:
    data: run_data.RunData
    models: Models
    demo_notice: Optional[str] = None
    votes: Optional[VoteStore] = None
    runs: Optional[ModelSet] = None  # every run's models (Compare, the API); the first run's alone when None
    left_out: dict = field(default_factory=dict)  # run name -> why it could not be loaded (named on the page)
    max_queued_per_client: int = DEFAULT_LIMIT  # dashboard/fair_queue.py; 0 = no cap
    prices: tuple = (None, None)  # US$ per device-hour and per CPU-hour given at start-up; None: the listed price
    following: bool = False  # the run is still training: the app is served again as it advances (app.py)

    def __post_init__(self):
        self.own = single(self.data, self.models)  # the first run's models under their plain names (votes)
        self.runs = self.runs or self.own

    @property
    def names(self) -> list[str]:
        """The run's models, base first: what the page offers."""
        return self.models.loaded.models

    @property
    def prompt_template(self) -> str:
        return self.data.prompt_template


FORWARDED_ALLOW_IPS = "FORWARDED_ALLOW_IPS"  # uvicorn's setting: the proxies whose X-Forwarded-For it believes


def trust_forwarded_from(proxies: Optional[str]) -> None:
    """Believe X-Forwarded-For only from the proxies named (uvicorn's syntax: addresses or networks, comma
    separated; '' = none). uvicorn's own default trusts 127.0.0.1, so through anything local (a reverse proxy on
    the same host, a tunnel, --share) a client could name its own address; here nothing is trusted unless the
    operator says so. From a named proxy, uvicorn takes the right-most address that is not a named proxy."""
    os.environ[FORWARDED_ALLOW_IPS] = proxies or ""


def client_address(request: gr.Request) -> Optional[str]:
    """Who is asking: the connecting address (uvicorn replaces it by a forwarded one only from a proxy the
    operator named, see trust_forwarded_from); on a Hugging Face Space (SPACE_ID set) the address its proxy
    appended last to X-Forwarded-For. Earlier entries are whatever the client wrote, so they are never trusted."""
    forwarded = (request.headers or {}).get("x-forwarded-for", "") if os.environ.get("SPACE_ID") else ""
    return forwarded.split(",")[-1].strip() or getattr(request.client, "host", None)


def client_of(state: AppState, request: Optional[gr.Request]) -> Optional[str]:
    """A keyed hash of who is asking, never the address itself."""
    if request is None or state.votes is None:
        return None
    return state.votes.client_key(client_address(request))


def session_of(state: AppState, request: Optional[gr.Request]) -> Optional[str]:
    """A keyed hash of the browser session (or API client) asking: a battle is voted in the session that drew it."""
    session = getattr(request, "session_hash", None)
    if not session or state.votes is None:
        return None
    return state.votes.client_key(f"session:{session}")


def named_request(state: AppState, text, request: Optional[gr.Request]) -> None:
    """Someone is about to see summaries of `text` under model names: no vote on that text counts from now on,
    from any address, and it leaves the test battle pool (dashboard/votes.py)."""
    if state.votes is not None and isinstance(text, str) and text.strip():
        try:
            state.votes.record_named_request(client_of(state, request), text)
        except VoteError:  # the store paused voting and said why in the log; the summaries are still served
            pass


def refuse(message: str) -> gr.Error:
    """An expected refusal: shown to the user, no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def start_request(served: ModelSet, text, reference, settings: dict, models, on_tokens=None):
    """Validate every input (a clear refusal for each mistake) and queue the request: (request, the checked
    reference, the truncation notice)."""
    try:
        checked = Settings.from_inputs(**settings)
        reference = check_text(reference, "reference", required=False)
        request = served.submit(text, checked, models, on_tokens)
    except InputError as e:
        raise refuse(str(e)) from None
    notice = (f"⚠️ The dialogue is longer than the models read: it was **truncated to {MAX_SOURCE_TOKENS} "
              "tokens**." if request.truncated else "")
    return request, reference, notice


def wait(served: ModelSet, text, models, settings: Optional[dict] = None) -> dict[str, Summary]:
    """Validate, queue and wait: {model: Summary}."""
    request, _, _ = start_request(served, text, "", settings or {}, models)
    return request.result()


def reference_rouge(reference: str, summaries: dict, labels: dict) -> pd.DataFrame:
    if not reference:
        return pd.DataFrame(columns=["model", *run_data.METRIC_LABELS.values()])
    return pd.DataFrame([{"model": labels[m], **{run_data.METRIC_LABELS[k]: round(v, 4)
                                                 for k, v in ROUGE.score(reference, s.text).items() if k in METRICS}}
                         for m, s in summaries.items() if not s.error])


def model_label(summary: Summary, name: str) -> str:
    if summary.error:
        return f"**{plain(name)}**: unavailable"
    how = "one batched call shared with other rows" if summary.shared_call else "its own call"
    return f"**{plain(name)}** · {summary.backend} · {summary.seconds:.2f} s ({how}) · {summary.tokens} tokens"


def output_text(summary: Summary) -> str:
    if summary.error:
        return f"(unavailable) {summary.error}"
    return summary.text or "(no text: the model generated only special tokens)"


@dataclass
class Shown:
    """What the Compare page shows at one moment: every model's text and label, the ROUGE table, the notice."""
    texts: dict
    labels: dict
    table: pd.DataFrame
    notice: str


def stream_summaries(state: AppState, text, reference, settings: dict, models,
                     client: Optional[gr.Request] = None) -> Iterator[Shown]:
    """Every chosen model's text as its tokens come (decoded a few times a second), then the final texts with
    their latency, and the ROUGE table against the reference."""
    served = state.runs
    latest = {}  # model -> its token ids so far, written by the worker's threads
    request, reference, notice = start_request(served, text, reference, settings, models, latest.__setitem__)
    named_request(state, text, client)
    names = [*dict.fromkeys([*fixed_keys(served), *served.keys])]
    texts = {m: "" for m in names}
    labels = {m: f"**{shown_label(served, m)}** {NOT_IN_RUN if m not in served.keys else '(not selected)'}"
              for m in names}
    labels.update({m: f"**{served.label(m)}** · generating…" for m in request.models})
    empty = reference_rouge("", {}, {})
    shown = {}
    while not request.future.done():
        time.sleep(STREAM_EVERY if shown else 0.02)  # the first text as soon as there is one
        now = {m: len(ids) for m, ids in list(latest.items())}
        if now != shown:
            shown = now
            for m in now:
                texts[m] = served.decode(m, latest[m][:now[m]])
            yield Shown(texts, labels, empty, notice)
    summaries = request.result()
    for m, s in summaries.items():
        texts[m], labels[m] = output_text(s), model_label(s, served.label(m))
        if note := failure_note(s, text):
            labels[m] += f"  \n{note}"
    yield Shown(texts, labels, reference_rouge(reference, summaries, {m: served.label(m) for m in summaries}), notice)


def fixed_keys(served: ModelSet) -> list[str]:
    """The first run's base, full and lora, whether it has them or not: /summarize's first positions."""
    return [served.key(served.runs[0], m) for m in DEFAULT_MODELS]


def shown_label(served: ModelSet, key: str) -> str:
    return served.label(key) if key in served.where else key.rpartition("/")[2]


def table_value(frame: pd.DataFrame) -> dict:
    """A table as API clients have always received it (gr.Dataframe's wire format)."""
    return {"headers": list(frame.columns), "data": frame.values.tolist(), "metadata": None}


def make_summarize_api(state: AppState):
    """`/summarize`, the documented API: base, full and lora texts first, then their labels, the ROUGE table and
    the notice (the original contract), then each further method's text and label. A typed function (gr.api):
    its outputs are the return annotation, so runs without full or lora need no hidden widgets."""
    first = fixed_keys(state.runs)
    extra = [m for m in state.runs.keys if m not in first]
    c = {name: control.default for name, control in CONTROLS.items()}

    def summarize(text: str, reference: str = "", max_new_tokens: int = c["max_new_tokens"],
                  num_beams: int = c["num_beams"], do_sample: bool = c["do_sample"],
                  temperature: float = c["temperature"], top_p: float = c["top_p"], seed: int = c["seed"],
                  models: Optional[list[str]] = None, request: gr.Request = None):
        settings = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample,
                        temperature=temperature, top_p=top_p, seed=seed)
        *_, last = stream_summaries(state, text, reference, settings, models, request)
        return (*[last.texts[m] for m in first], *[last.labels[m] for m in first], table_value(last.table),
                last.notice, *[v for m in extra for v in (last.texts[m], last.labels[m])])

    summarize.__annotations__["return"] = tuple.__class_getitem__((str,) * 6 + (dict, str) + (str,) * 2 * len(extra))
    return summarize


def make_summarize_all_api(state: AppState):
    def summarize_all(text: str, request: gr.Request = None) -> dict:
        """Every model of the run on one dialogue (evaluation's greedy settings): {model: {summary, seconds,
        tokens}}; an unavailable model gets {"error": why}."""
        summaries = wait(state.runs, text, state.runs.keys)
        named_request(state, text, request)
        return {m: ({"error": s.error} if s.error else {
            "summary": s.text, "seconds": round(s.seconds, 4), "tokens": s.tokens, "backend": s.backend,
            "unsupported_details": lenses.unsupported_details(s.text, text), "repetition": lenses.repetitions(s.text)})
            for m, s in summaries.items()}

    return summarize_all


SORTS = {"disagreement between methods": "spread", "unsupported details": "unsupported",
         "repetition": "repetition", "dialogue length": "dialogue_chars", "test order": None}


def example_choices(preds: Optional[pd.DataFrame], order: str = "test order") -> list[tuple[str, str]]:
    if preds is None or preds.empty:
        return []
    key = SORTS[order]
    frame = preds if key is None else preds.sort_values(key, ascending=False, kind="stable")
    return [(f"{r.id} · {r.dialogue_chars} chars · ROUGE-1 range across methods {r.spread:.3f} · "
             f"{r.unsupported} unsupported details, {r.repetition} repeats · "
             f"{r.dialogue[:60].replace(chr(10), ' ')}…", r.id) for r in frame.itertuples()]


def highlighted(text: str, unsupported: list[str], repeats: list[str]) -> list[tuple[str, Optional[str]]]:
    """The summary as (piece, label) pairs for gr.HighlightedText: invented details and repeated words marked."""
    if not text:
        return [("(no text: the model generated only special tokens)", None)]
    marks = {w: "unsupported" for w in unsupported}
    marks.update({w: "repeats" for r in repeats for w in r.split()} if repeats else {})
    pieces = re.split(r"(#\w+#|\w+)", text)
    return [(p, marks.get(p) or marks.get(p.lower())) for p in pieces if p]


def failure_note(summary: Summary, dialogue: str) -> str:
    """What the lenses see in one live summary (no model needed): invented details, repetition."""
    if summary.error or not summary.text:
        return ""
    notes = []
    if found := lenses.unsupported_details(summary.text, dialogue):
        notes.append(f"⚠️ not in the dialogue: {', '.join(found[:6])}")
    if loops := lenses.repetitions(summary.text):
        notes.append(f"⚠️ repeats: “{loops[0]}”")
    return " · ".join(notes)


def example_details(data: run_data.RunData, example_id: Optional[str]):
    """(dialogue, references, every model's output, per-example ROUGE table) of one test dialogue."""
    preds = data.shown_predictions  # never a held-back (battle) dialogue
    models = [m for m in data.models if preds is not None and m in preds]
    if preds is None or example_id not in set(preds["id"]):
        return "", "", *["" for _ in models], pd.DataFrame()
    row = preds[preds["id"] == example_id].iloc[0]
    refs = "\n".join(f"{i}. {r}" for i, r in enumerate(row["references"], 1))
    scores = pd.DataFrame([{"model": data.label(m), **{label: round(row["rouge"][m][k], 4)
                                                       for k, label in run_data.METRIC_LABELS.items()}}
                           for m in models if m in row["rouge"]])
    texts = [highlighted(row[m], row[f"{m}_unsupported"], row[f"{m}_repeats"]) for m in models]
    return row["dialogue"], refs, *texts, scores


def example_reference(data: run_data.RunData, example_id: Optional[str]):
    """(dialogue, first reference) of a test example, for the Compare tab's picker."""
    preds = data.shown_predictions
    if preds is None or example_id not in set(preds["id"]):
        return gr.update(), gr.update()
    row = preds[preds["id"] == example_id].iloc[0]
    return row["dialogue"], row["references"][0]

