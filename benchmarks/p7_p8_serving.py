"""P7 and P8: serving many people at once, and how soon a person sees text.

    python benchmarks/p7_p8_serving.py            # ~5 min on 2 cores; P8 needs Debian's chromium

P7: 16 concurrent gradio_client clients, one /summarize request each (16 different dialogues, greedy), against the
app with the batching worker vs the same app serving one request at a time (max_rows=1, no waiting), side by side
on the same models (the flan-t5-small architecture with random weights, as P3/P4). Requests/s, p50/p95 latency,
outputs compared. Then 5 rounds of the same load on the batched app: the process's peak RSS in each round (no
leak: round 5 within 5% of round 2).
P8: Playwright + Chromium: from the click on the Compare button to the first visible text of any model, and to the
complete summaries, for a ~300-token dialogue.
"""

import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from common import base_arguments, load_setup, record
from serving_fixture import make_run

CHROMIUM = Path("/usr/bin/chromium")


def batcher_of(demo):
    """The app's batching worker (the benchmark reports how requests were grouped)."""
    for fn in demo.fns.values():
        state = getattr(fn.fn, "__closure__", None) or ()
        for cell in state:
            models = getattr(cell.cell_contents, "models", None)
            if models is not None and hasattr(models, "batcher"):
                return models.batcher
    return None


def launch(folder: Path, tmp: Path, name: str, **batching):
    import socket

    import app

    # every simulated visitor connects from 127.0.0.1: one client to the fair queue, which would cap them together
    demo = app.create_app(folder, tmp / f"votes-{name}.sqlite", **batching, max_queued_per_client=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def load(url: str, dialogues: list[str], new: int):
    """All clients at once; returns (wall seconds, latencies, outputs)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in dialogues]
    barrier = threading.Barrier(len(dialogues))

    def one(i):
        barrier.wait()
        start = time.perf_counter()
        out = clients[i].predict(dialogues[i], "", new, api_name="/summarize")
        return time.perf_counter() - start, out[:3]

    start = time.perf_counter()
    with ThreadPoolExecutor(len(dialogues)) as pool:
        results = list(pool.map(one, range(len(dialogues))))
    return time.perf_counter() - start, [r[0] for r in results], [r[1] for r in results]


def peak_rss_during(fn):
    process, peak, running = psutil.Process(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        running[0] = False
        thread.join()
    return peak[0]


def p8(url: str, dialogue: str, smoke: bool):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.locator("#dialogue textarea").fill(dialogue)
        page.wait_for_timeout(500)
        first_js = (
            "() => ['base','full','lora'].some(m => document.querySelector(`#out-${m} textarea`).value.length > 0)"
        )
        done_js = "() => (document.body.innerText.match(/ tokens/g) || []).length >= 3"
        start = time.perf_counter()
        page.locator("#summarize").click()
        page.wait_for_function(first_js, polling=10, timeout=120_000)
        first = time.perf_counter() - start
        page.wait_for_function(done_js, polling=10, timeout=300_000)
        done = time.perf_counter() - start
        browser.close()
    return first, done


def main():
    import app

    parser = base_arguments(__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=200, help="the app's default")
    parser.add_argument("--round-tokens", type=int, default=64, help="new tokens in the memory rounds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, new, rounds, round_new = (4, 4, 2, 4) if args.smoke else (args.clients, args.max_new_tokens, args.rounds,
                                                                args.round_tokens)
    setup = load_setup(max(n, 40), args.smoke)
    dialogues = setup.dialogues[:n]
    print(setup.source, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_run(Path(tmp) / "run", setup)
        batched, batched_url = launch(folder, Path(tmp), "batched")
        single, single_url = launch(folder, Path(tmp), "single", max_rows=1, max_wait_ms=0)
        load(batched_url, dialogues[:2], 2), load(single_url, dialogues[:2], 2)  # warm-up
        worker = batcher_of(batched)
        grouped = len(worker.batch_sizes) if worker else 0
        ours = load(batched_url, dialogues, new)
        groups = worker.batch_sizes[grouped:] if worker else []
        print("requests per batch:", groups, flush=True)
        one_at_a_time = load(single_url, dialogues, new)
        app.close_app(single)
        identical = sum(a == b for a, b in zip(ours[2], one_at_a_time[2]))
        p = lambda xs, q: statistics.quantiles(xs, n=20)[18] if q == 95 else statistics.median(xs)  # noqa: E731
        record("P7", n / ours[0], n / one_at_a_time[0], f"requests/s ({n} concurrent clients, /summarize)", ">= 3x",
               args.results, setup=setup.source, max_new_tokens=new, identical_outputs=f"{identical}/{n}",
               latency_p50_s={"ours": p(ours[1], 50), "baseline": p(one_at_a_time[1], 50)},
               latency_p95_s={"ours": p(ours[1], 95), "baseline": p(one_at_a_time[1], 95)},
               requests_per_batch=groups)
        peaks = [peak_rss_during(lambda: load(batched_url, dialogues, round_new)) / 2**20 for _ in range(rounds)]
        print("peak RSS per round (MiB):", [round(x) for x in peaks], flush=True)
        record("P7", peaks[-1], peaks[1], f"MiB peak RSS, round {rounds} vs round 2 of the same load (no leak)",
               "<= 1.05x", args.results, setup=setup.source, peaks_mib=peaks, max_new_tokens=round_new)
        if CHROMIUM.exists():
            long = "\n".join(setup.dialogues[i] for i in range(len(setup.dialogues)))
            tokens = setup.tokenizer(long)["input_ids"][:300]
            dialogue = setup.tokenizer.decode(tokens, skip_special_tokens=True)
            first, done = p8(batched_url, dialogue, args.smoke)
            record("P8", first, done, "seconds from the click (first visible text vs complete summaries; "
                   f"~{len(tokens)}-token dialogue, 200 new tokens)", "first <= 1.0 s", args.results,
                   setup=setup.source)
        app.close_app(batched)


if __name__ == "__main__":
    main()
