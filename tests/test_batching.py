"""Requests that arrive together share generate calls, give the same texts as one at a time, and stream."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from dashboard.inputs import Settings

DIALOGUES = [
    f"#Person1#: I'd like {n} tickets to {city}, please.\n#Person2#: For which day?\n#Person1#: {day}."
    for n, city, day in [
        ("two", "Boston", "Monday"),
        ("three", "Paris", "Friday"),
        ("one", "Oslo", "Sunday"),
        ("four", "Lima", "Tuesday"),
        ("five", "Rome", "Thursday"),
        ("six", "Kyiv", "Saturday"),
    ]
]
MIXED_REQUESTS = [  # (dialogue, settings, models): greedy of two lengths, seeded sampling, model subsets
    (DIALOGUES[0], Settings(max_new_tokens=16), ["base", "full", "lora"]),
    (DIALOGUES[1], Settings(max_new_tokens=16), ["lora"]),
    (DIALOGUES[2], Settings(max_new_tokens=16), ["base", "full"]),
    (DIALOGUES[3], Settings(max_new_tokens=9), ["base", "full", "lora"]),
    (DIALOGUES[4], Settings(max_new_tokens=16, do_sample=True, temperature=1.3, seed=5), ["base", "full", "lora"]),
    (DIALOGUES[5], Settings(max_new_tokens=16, do_sample=True, temperature=1.3, seed=6), ["base", "lora"]),
]


@pytest.fixture(scope="module")
def served(evaluated_run):
    from dashboard.serving import load_models

    return load_models(evaluated_run, max_wait=0.5)  # a long wait: everything submitted together is batched


def texts(results):
    assert not any(s.error for s in results.values()), {m: s.error for m, s in results.items()}
    return {m: s.text for m, s in results.items()}


def summarize(served, text, settings=Settings(), models=None):
    return served.submit(text, settings, models=models).result()


def test_batched_results_equal_one_at_a_time(served):
    sequential = [texts(summarize(served, d, s, models=m)) for d, s, m in MIXED_REQUESTS]
    calls_before = served.batcher.calls
    seen = []
    original = served.batcher.backend

    class Spy:  # the backend sees plain calls, one settings for all of them
        written_by = original.written_by

        def __call__(self, calls, settings, context=None):
            seen.extend((c.group or c.model, {settings}, len(c.input_ids)) for c in calls)
            return original(calls, settings, context)

    served.batcher.backend = Spy()
    try:
        with ThreadPoolExecutor(len(MIXED_REQUESTS)) as pool:
            together = list(pool.map(lambda r: texts(summarize(served, r[0], r[1], models=r[2])),
                                     MIXED_REQUESTS))
    finally:
        served.batcher.backend = original
    assert together == sequential
    assert all(len(settings) == 1 for _, settings, _ in seen)  # never two kinds of settings in one call
    sampled = {MIXED_REQUESTS[4][1], MIXED_REQUESTS[5][1]}
    assert all(n <= 2 for _, s, n in seen if s & sampled)  # a sampling request is served alone (<= its 2 rows)
    # the three 16-token greedy requests: one mixed call of their 4 base/lora rows, one full call of 2 rows
    assert ("LORA", {MIXED_REQUESTS[0][1]}, 4) in seen and ("full", {MIXED_REQUESTS[0][1]}, 2) in seen
    assert served.batcher.calls - calls_before < sum(len(m) for *_, m in MIXED_REQUESTS)


def test_streaming_handler_yields_growing_texts_then_the_final_ones(evaluated_run, served):
    from dashboard import run_data as rd
    from dashboard.handlers import AppState, stream_summaries

    state = AppState(data=rd.load_run(evaluated_run), models=served)
    steps = [(dict(s.texts), dict(s.labels)) for s in  # long enough to be seen mid-way
             stream_summaries(state, DIALOGUES[0], "", {"max_new_tokens": 200}, None)]
    final, final_labels = steps[-1]
    models = ["base", "full", "lora"]
    assert len(steps) >= 2 and all(final[m] for m in models)
    seen_mid_way = 0
    for box in models:  # a short output may be complete before the first update
        partial = [texts[box] for texts, _ in steps[:-1] if texts[box] and texts[box] != final[box]]
        assert all(final[box].startswith(t[:len(t) - 2]) for t in partial)  # each a prefix of the final text
        seen_mid_way += bool(partial)
    assert seen_mid_way >= 1
    assert "generating" in " ".join(steps[0][1][m] for m in models)
    assert all("tokens" in final_labels[m] for m in models)


def test_a_100000_character_chat_is_accepted_and_truncated(served):
    long = "\n".join(f"#Person{1 + i % 2}#: line {i} about the trip and the tickets." for i in range(2500))[:100_000]
    request = served.submit(long, Settings(max_new_tokens=4), models=["full"])
    results, truncated = request.result(), request.truncated
    assert truncated and len(long) == 100_000 and not results["full"].error


@pytest.mark.slow
def test_sixteen_concurrent_requests_equal_sequential(served):
    requests = [(DIALOGUES[i % 6], Settings(max_new_tokens=12, do_sample=i % 3 == 0, seed=i)) for i in range(16)]
    sequential = [texts(summarize(served, d, s)) for d, s in requests]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda r: texts(summarize(served, *r)), requests))
    assert together == sequential


def test_mixed_batches_split_by_max_rows_never_overlap(evaluated_run, served):
    """One row per call: base and lora each get their own call on the shared-weights model; run at the same
    time they would take each other's adapter hooks (peft's adapter_names is model state)."""
    from dashboard.serving import load_models

    one_row = load_models(evaluated_run, max_rows=1, max_wait=0)
    alone = [texts(summarize(one_row, dialogue, Settings(max_new_tokens=16))) for dialogue in DIALOGUES]
    together = [texts(summarize(served, dialogue, Settings(max_new_tokens=16))) for dialogue in DIALOGUES]
    assert alone == together
    # the check can fail only where the adapter changes a summary: on some dialogue it must (a tiny LoRA may leave
    # one dialogue's 16 tokens as the base writes them)
    assert any(one["base"] != one["lora"] for one in alone)


def test_tokenizer_is_safe_under_concurrent_requests_of_different_truncation(served):
    """Request threads count tokens (no truncation), the worker's two lanes encode with truncation and padding,
    and streaming decodes on yet other threads: all through one tokenizer. Long (truncated) and short requests
    at once, streamed, give what they give one at a time."""
    long = "\n".join(f"#Person{1 + i % 2}#: line {i} about the trip." for i in range(300))
    requests = [(long if i % 2 else DIALOGUES[i % 6], Settings(max_new_tokens=6 + i % 3)) for i in range(12)]
    sequential = [texts(summarize(served, d, s)) for d, s in requests]

    def streamed(request):
        decoded = []
        req = served.submit(*request, on_tokens=lambda m, ids: decoded.append(served.tokenizer.decode(ids)))
        return req.truncated, texts(req.result()), decoded

    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(streamed, requests))
    assert [t for _, t, _ in together] == sequential
    assert [truncated for truncated, _, _ in together] == [bool(i % 2) for i in range(12)]
    assert all(decoded for _, _, decoded in together)


def test_serial_tokenizer_from_many_threads_with_different_settings(served):
    tok = served.tokenizer
    text = "word " * 800

    def use(i):
        for n in range(20):
            ids = tok.encode([text, "short"], truncation=True, max_length=8 + i + n, padding=bool(i % 2))["input_ids"]
            assert len(ids[0]) == 8 + i + n and tok.count(text) > 512 and tok.decode(ids[1])
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(use, range(8)))
