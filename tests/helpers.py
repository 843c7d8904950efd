"""What the tests share that is not a fixture: paths, markers for what needs ../shared, small training settings
and callbacks, the browser and a free port. Fixtures live in conftest.py."""

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from contract.files import ADAPTER, MODEL, method_metrics  # noqa: E402  (after the path is set)

FULL_MODEL, FULL_METRICS = f"full/{MODEL}", method_metrics("full")
LORA_ADAPTER, LORA_METRICS = f"lora/{ADAPTER}", method_metrics("lora")

needs_shared = pytest.mark.skipif(
    not (SHARED / "data" / "dialogsum").is_dir(),
    reason="../shared (DialogSum dev/test, the FLAN-T5 tokenizer, the lab's predictions) is not beside this "
           "checkout; it exists in the project's CI, not in a user's clone")


class CaptureModel(TrainerCallback):
    """Keeps the trained model object so tests can compare it with what was saved."""

    def __init__(self, store: dict, key: str):
        self.store, self.key = store, key

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.store[self.key] = model


class StopAt(TrainerCallback):
    """Interrupts training right after optimizer step `step`, as a Ctrl-C would."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption")


def tiny_config(run_dir, **overrides):
    from training.config import TrainConfig

    settings = dict(preset="tiny", output_dir=str(run_dir), max_train_samples=16, max_eval_samples=8, batch_size=16,
                    max_steps=10, logging_steps=1, eval_steps=5, tiny_pretrain_steps=0)
    settings.update(overrides)
    return TrainConfig(**settings)


CHROMIUM = Path("/usr/bin/chromium")
DIALOGUES = [f"#Person1#: I need a ticket to {city}.\n#Person2#: When would you like to leave?\n"
             f"#Person1#: On {day}. I'd prefer the train." for city, day in
             [("Boston", "Monday"), ("Paris", "Friday"), ("Tokyo", "Sunday"), ("Denver", "Tuesday"),
              ("Madrid", "Thursday"), ("Seattle", "Saturday"), ("Sydney", "Wednesday"), ("Chicago", "Monday")]]


SEEN_STREAMING = """() => new Promise(resolve => {
  const start = performance.now();
  const tick = () => {
    const boxes = ['base', 'full', 'lora'].map(m => document.querySelector(`#out-${m} textarea`).value);
    const generating = document.body.innerText.includes('generating…');
    if (generating && boxes.some(v => v.length > 0)) return resolve(true);
    if ((!generating && boxes.every(v => v.length > 0)) || performance.now() - start > 60000) return resolve(false);
    setTimeout(tick, 5);
  };
  tick();
})"""


ALL_DONE = "n => (document.body.innerText.match(/ tokens/g) || []).length >= n"


def screenshots() -> Path:
    shots = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "out" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@contextmanager
def browser_page(url: str):
    """Debian's Chromium, headless, on `url`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox",
                                                                                         "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        yield page
        browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched(demo):
    """A page from app.create_app served on a free loopback port (its URL), closed after."""
    import app

    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close_app(demo)
