"""The app as a ZeroGPU Space runs it: SPACES_ZERO_GPU=true with the stand-in `spaces` (tests/stand_ins/spaces:
every @spaces.GPU call in a forked process, results pickled back, a T5 forward pass outside a call raises). Each
answer must equal the plain app's."""

import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import ALL_DONE, CHROMIUM, DIALOGUES, ROOT, SEEN_STREAMING, browser_page, free_port, screenshots

STAND_IN = ROOT / "tests" / "stand_ins"


def zero_gpu_env(**extra) -> dict:
    return {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": f"{STAND_IN}{os.pathsep}{ROOT}", **extra}


def test_the_stand_in_refuses_model_work_outside_a_call(evaluated_run):
    code = ("import spaces, sys; from dashboard.serving import load_models; from dashboard.backends import "
            "LocalBackend; from dashboard.inputs import Settings; m = load_models(sys.argv[1]); "
            "m.batcher.backend = LocalBackend(m.loaded, m.tokenizer.special_ids); "
            "print(m.submit('#Person1#: hi', Settings(max_new_tokens=4), models=['full']).result()['full'].error)")
    out = subprocess.run([sys.executable, "-c", code, str(evaluated_run)], cwd=ROOT, env=zero_gpu_env(),
                         capture_output=True, text=True, timeout=300)
    assert "outside a @spaces.GPU call" in out.stdout, out.stderr[-2000:]  # the contract the app must keep


@pytest.fixture(scope="module")
def zero_gpu_app(evaluated_run, tmp_path_factory):
    port = free_port()
    votes = tmp_path_factory.mktemp("zerogpu") / "votes.sqlite"
    # requests wait up to 0.3 s for company: one test sends two that must arrive together, in a known order
    process = subprocess.Popen(
        [
            sys.executable,
            "app.py",
            "--run",
            str(evaluated_run),
            "--port",
            str(port),
            "--votes_db",
            str(votes),
            "--max_wait_ms",
            "300",
        ],
        cwd=ROOT,
        env=zero_gpu_env(STANDIN_OUT_OF_QUOTA="broke"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"the app stopped: {process.stdout.read()[-3000:]}")
            time.sleep(1)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def plain_answers(evaluated_run):
    """What the app without ZeroGPU answers (the local backend, in this process)."""
    from dashboard import run_data as rd
    from dashboard.handlers import AppState, make_summarize_all_api
    from dashboard.serving import load_models

    summarize_all = make_summarize_all_api(
        AppState(data=rd.load_run(evaluated_run), models=load_models(evaluated_run))
    )
    return {d: {m: v["summary"] for m, v in summarize_all(d).items()} for d in DIALOGUES[:5]}


def texts(answer: dict) -> dict:
    return {m: v.get("summary", v.get("error")) for m, v in answer.items()}


@pytest.mark.slow
def test_one_then_four_concurrent_requests_equal_the_plain_app(zero_gpu_app, plain_answers):
    from gradio_client import Client

    client = Client(zero_gpu_app, verbose=False)
    assert texts(client.predict(DIALOGUES[0], api_name="/summarize_all")) == plain_answers[DIALOGUES[0]]
    clients = [Client(zero_gpu_app, verbose=False) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda c_d: c_d[0].predict(c_d[1], api_name="/summarize_all"),
                                zip(clients, DIALOGUES[1:5])))
    assert [texts(a) for a in answers] == [plain_answers[d] for d in DIALOGUES[1:5]]
    base, full, lora, *_ = client.predict(DIALOGUES[2], api_name="/summarize")
    assert (base, full, lora) == tuple(plain_answers[DIALOGUES[2]][m] for m in ("base", "full", "lora"))


@pytest.mark.slow
def test_votes_work_on_zero_gpu(zero_gpu_app):
    from gradio_client import Client

    client = Client(zero_gpu_app, verbose=False)
    pasted = client.predict(DIALOGUES[6], api_name="/vote_battle")  # two models generate live, inside a call
    assert pasted["summary_a"] and pasted["summary_b"]
    assert client.predict(pasted["battle_id"], "a", api_name="/vote_cast")["flag"] is None
    stored = client.predict("", api_name="/vote_battle")
    assert client.predict(stored["battle_id"], "tie", api_name="/vote_cast")["choice"] == "tie"


@pytest.mark.slow
def test_a_visitor_out_of_quota_gets_one_line_and_others_are_served(zero_gpu_app, plain_answers):
    from gradio_client import Client

    broke = Client(zero_gpu_app, verbose=False, headers={"x-standin-visitor": "broke"})
    fine = Client(zero_gpu_app, verbose=False, headers={"x-standin-visitor": "fine"})
    alone = broke.predict(DIALOGUES[3], api_name="/summarize_all")
    assert all("exceeded your free ZeroGPU quota" in v["error"] and "\n" not in v["error"] for v in alone.values())
    # arriving together, the out-of-quota visitor first: the batch is charged to it and refused, then each request
    # is served alone, so the other visitor still gets its summaries
    first = broke.submit(DIALOGUES[4], api_name="/summarize_all")
    deadline = time.time() + 60
    while first.status().code.name not in ("PROCESSING", "FINISHED") and time.time() < deadline:
        time.sleep(0.005)  # until it is in the batcher, waiting 0.3 s for company
    second = fine.submit(DIALOGUES[3], api_name="/summarize_all")
    assert texts(second.result(timeout=120)) == plain_answers[DIALOGUES[3]]
    assert all("ZeroGPU quota" in v["error"] for v in first.result(timeout=120).values())


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_the_compare_button_streams_on_zero_gpu(zero_gpu_app):
    with browser_page(zero_gpu_app) as page:
        page.locator("#dialogue textarea").fill(DIALOGUES[1])
        page.get_by_role("button", name="Summarize with the chosen models").click()
        assert page.evaluate(SEEN_STREAMING)  # tokens reached the page while the forked call was generating
        page.wait_for_function(ALL_DONE, arg=3, timeout=60_000)
        page.screenshot(path=str(screenshots() / "compare-zerogpu.png"), full_page=True)
