"""The app served on a loopback port: the /summarize API with gradio_client, and a real browser (Chromium)."""

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import ALL_DONE, CHROMIUM, DIALOGUES, ROOT, SEEN_STREAMING, browser_page, free_port, screenshots


@pytest.fixture(scope="module")
def server(evaluated_run):
    import app

    demo = app.create_app(evaluated_run)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close_app(demo)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def test_importing_app_starts_nothing():
    import app

    assert not hasattr(app, "demo") and callable(app.main)


def test_close_app_stops_the_server_on_its_own_loop_while_a_client_is_connected(evaluated_run):
    """Gradio's close() sets the server's asyncio stop event from the calling thread while the server's loop may be
    removing a disconnected client's heartbeat waiter ("deque mutated during iteration"): close_app
    sets it on the loop's thread, ends the open heartbeat stream and frees the port."""
    import asyncio
    import threading
    import time
    import urllib.request

    import app

    demo, url = serve(evaluated_run)
    setters = []

    class RecordedEvent(asyncio.Event):
        def set(self):
            setters.append(threading.current_thread())
            super().set()

    demo.app.stop_event = RecordedEvent()
    heartbeat = threading.Thread(daemon=True, target=lambda: urllib.request.urlopen(
        f"{url}gradio_api/heartbeat/a-test-session", timeout=60).read())
    heartbeat.start()
    deadline = time.monotonic() + 30
    while not demo.app.stop_event._waiters and time.monotonic() < deadline:
        time.sleep(0.05)
    assert demo.app.stop_event._waiters, "the heartbeat stream never waited on the stop event"
    app.close_app(demo)
    heartbeat.join(timeout=30)
    assert not heartbeat.is_alive(), "the heartbeat stream was still open after close_app"
    assert setters and setters[0] is not threading.current_thread(), "the stop event was set from the test's thread"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds; the closed stream's TIME_WAIT
        s.bind(("127.0.0.1", demo.server_port))  # nothing listens on the port any more


def test_summarize_endpoint_with_only_the_text(client):
    base, full, lora, *rest = client.predict(DIALOGUES[0], api_name="/summarize")
    assert full and lora and base
    assert "Full fine-tune" in rest[1] and "tokens" in rest[1]


def test_empty_text_is_refused_with_a_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Paste a dialogue first"):
        client.predict("   ", api_name="/summarize")


def test_concurrent_requests_equal_sequential_ones(client):
    # sampling with a seed per request: any leak of RNG state or adapter state between requests changes outputs
    kwargs = [dict(api_name="/summarize", max_new_tokens=24, do_sample=True, seed=i) for i in range(len(DIALOGUES))]
    sequential = [client.predict(d, **kw)[:3] for d, kw in zip(DIALOGUES, kwargs)]
    jobs = [client.submit(d, **kw) for d, kw in zip(DIALOGUES, kwargs)]
    concurrent = [job.result(timeout=300)[:3] for job in jobs]
    assert concurrent == sequential
    assert len({s[2] for s in sequential}) > 1  # different requests, different summaries: a real comparison


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_browser_compares_three_models_and_shows_the_charts(server):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "out" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.locator("#dialogue textarea").fill(DIALOGUES[1])
        page.get_by_role("button", name="Summarize with the chosen models").click()
        assert page.evaluate(SEEN_STREAMING)  # text was in a box while the models were still generating
        for model in ("base", "full", "lora"):
            box = page.locator(f"#out-{model} textarea")
            box.wait_for()
            page.wait_for_function("el => el.value.length > 0", arg=box.element_handle(), timeout=60_000)
        page.wait_for_function(ALL_DONE, arg=3, timeout=60_000)  # the per-model latency/token labels, when done
        page.screenshot(path=str(shots / "compare.png"), full_page=True)
        page.get_by_role("tab", name="Metrics").click()
        page.locator("#plot-verdict .js-plotly-plot").wait_for(timeout=30_000)  # the answer and its chart first
        said = page.inner_text("#verdict")
        assert "writes the best summaries" in said or "No method beats the base" in said
        assert page.locator(".js-plotly-plot").count() == 1  # the details wait, closed, one click away
        for details in ("Cost vs quality on every cost", "Parameters, training cost", "Where methods fail"):
            page.get_by_text(details).click()
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=30_000)
        assert page.get_by_text("ROUGE F1 by model").count() >= 1
        page.screenshot(path=str(shots / "metrics.png"), full_page=True)
        page.get_by_role("tab", name="Examples").click()
        page.get_by_text("Per-example ROUGE").first.wait_for()
        page.screenshot(path=str(shots / "examples.png"), full_page=True)
        browser.close()


def serve(run_dir):
    import app

    demo = app.create_app(run_dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def all_methods_server(methods_run):
    import app

    demo, url = serve(methods_run)
    yield url
    app.close_app(demo)


@pytest.mark.slow
def test_summarize_all_and_summarize_keep_their_contracts(all_methods_server):
    from gradio_client import Client

    client = Client(all_methods_server, verbose=False)
    everything = client.predict(DIALOGUES[2], api_name="/summarize_all")
    assert list(everything) == ["base", "full", "lora", "lora_all", "dora", "ia3", "prompt_tuning", "prefix_tuning",
                                "lora_r4_qk"]
    assert all(
        set(v) == {"summary", "seconds", "tokens", "backend", "unsupported_details", "repetition"} and v["seconds"] > 0
        for v in everything.values()
    ) and {v["backend"] for v in everything.values()} == {"exact"}
    assert all(isinstance(v["unsupported_details"], list) and isinstance(v["repetition"], list)
               for v in everything.values())
    base, full, lora, *rest = client.predict(DIALOGUES[2], api_name="/summarize")
    assert (base, full, lora) == tuple(everything[m]["summary"] for m in ("base", "full", "lora"))
    assert "tokens" in rest[1]  # full's label: the original positions hold


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_browser_picks_a_non_default_set_of_models(all_methods_server):
    shots = screenshots()
    with browser_page(all_methods_server) as page:
        page.locator("#dialogue textarea").fill(DIALOGUES[3])
        models = page.locator("#models")
        models.get_by_label("Base (no fine-tuning)").uncheck()
        models.get_by_label("IA³").check()
        models.get_by_label("Prompt tuning (20 tokens)").check()
        page.get_by_role("button", name="Summarize with the chosen models").click()
        for model in ("full", "lora", "ia3", "prompt_tuning"):
            box = page.locator(f"#out-{model} textarea")
            page.wait_for_function("el => el.value.length > 0", arg=box.element_handle(), timeout=60_000)
        page.wait_for_function(ALL_DONE, arg=4, timeout=60_000)
        assert not page.locator("#out-base").is_visible() and not page.locator("#out-dora").is_visible()
        page.screenshot(path=str(shots / "compare-methods.png"), full_page=True)
        page.get_by_role("tab", name="Metrics").click()
        page.get_by_text("Cost vs quality on every cost").click()  # a closed section, one click away
        page.get_by_text("Pareto frontier").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "metrics-methods.png"), full_page=True)


@pytest.mark.slow
def test_a_flood_from_one_client_is_capped_and_another_client_is_served_meanwhile(evaluated_run, monkeypatch):
    """100 concurrent /summarize_all from one address (more than the queue holds) against a cap of 4: the
    flood's excess is refused at once, and a second address is served while the flood lasts (behind a trusted
    proxy: each client's address in X-Forwarded-For, as nginx or a Space's proxy sends it)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client
    from gradio_client.utils import QueueError

    import app

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")
    demo = app.create_app(evaluated_run, max_queued_per_client=4)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    flooder = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.66"})
    other = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.7"})
    try:
        jobs = [flooder.submit(DIALOGUES[i % len(DIALOGUES)] + f" ({i})", api_name="/summarize_all")
                for i in range(100)]
        with ThreadPoolExecutor(1) as pool:
            served = pool.submit(other.predict, DIALOGUES[0], api_name="/summarize_all").result(timeout=120)
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(bool(job.result(timeout=300)))
            except QueueError:  # the refusal: for this client the queue is full (HTTP 503, Gradio's own signal)
                outcomes.append(False)
    finally:
        app.close_app(demo)
    assert set(served) >= {"base", "full", "lora"} and all("summary" in v for v in served.values())
    assert 4 <= sum(outcomes) < 100  # the cap held: most of the flood was refused, never the other visitor

