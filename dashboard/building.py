"""The page a first start serves at once, while the demo run is built: which stage, a progress bar with steps and
time left, and the build's last lines. When the models are served the page reloads itself into the app.

    python app.py                  # no run yet: this page at http://127.0.0.1:7860 within seconds, then the app

app.py runs the build (`python -m training --preset tiny`) as a child process and feeds its output, line by line,
to `BuildProgress`; this module only reads that text (tqdm bars, the pipeline's own lines) and draws it.
"""

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import gradio as gr

from contract.untrusted import plain, without_folders

TITLE = "Building the demo run: FLAN-T5 dialogue summarization"
LAST_LINES = 12
# a tqdm bar: "lora:  42%|████▏     | 210/500 [00:21<00:29,  9.8it/s]" (the description is optional)
BAR = re.compile(r"(?:(?P<desc>[^|\r\n]*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
                 r"\[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)")
# what the pipeline prints as it enters a stage (training/__main__.py, finetune.py, evaluate.py, tiny_pretrain.py)
STAGES = (
    ("base", re.compile(r"copy pre-training|building the tiny base|tiny base", re.I), "The tiny base model"),
    ("train", re.compile(r"^training (?P<name>\S+)", re.I), "Fine-tuning"),
    ("evaluate", re.compile(r"^evaluat", re.I), "Evaluating every model on the test dialogues"),
    ("load", re.compile(r"^loading the models", re.I), "Loading the models into the app"),
)
RELOAD_JS = """
async () => {
  // A newer page replaces this one on the same address (the app once the build is done, or a run in progress
  // served again once a method has finished): its /config has another title.
  const building = document.title;
  for (;;) {
    await new Promise(r => setTimeout(r, 2000));
    try {
      const config = await (await fetch("/config", {cache: "no-store"})).json();
      if (config.title && config.title !== %s) { location.reload(); return; }
    } catch (e) { /* the address is switching over: try again */ }
  }
}
"""


PROCESS_ID = re.compile(r"\b(pid|process)\s*[=:#]?\s*\d+", re.IGNORECASE)


def for_visitors(line: str) -> str:
    """A build line as the page shows it: a file keeps its name but not the server's folders (…/name), a process
    id is left out. The terminal keeps the whole line."""
    return PROCESS_ID.sub(r"\1 …", without_folders(line))


@dataclass
class BuildProgress:
    """What the build has said so far; written by the reader thread, read by the page's timer."""
    command: str
    started: float = field(default_factory=time.monotonic)
    stage: str = "Starting"
    detail: str = ""
    step: Optional[tuple[int, int]] = None
    left: str = ""
    lines: deque = field(default_factory=lambda: deque(maxlen=LAST_LINES))
    failed: Optional[str] = None
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, text: str) -> None:
        """One chunk of output (tqdm redraws with carriage returns: each part is a line)."""
        for part in re.split(r"[\r\n]+", text):
            if part.strip():
                self.take(part.rstrip())

    def take(self, line: str) -> None:
        with self.lock:
            bar = BAR.search(line)
            if bar:
                self.step = (int(bar["n"]), int(bar["total"]))
                self.left = bar["left"]
                return
            self.lines.append(for_visitors(line)[:300])
            for _, pattern, label in STAGES:
                match = pattern.search(line.strip())
                if match:
                    self.stage, self.step, self.left = label, None, ""
                    self.detail = match.groupdict().get("name") or ""

    def set(self, stage: str, failed: Optional[str] = None, done: bool = False) -> None:
        with self.lock:
            self.stage, self.failed, self.done, self.step = stage, failed, done, None

    def markdown(self) -> str:
        with self.lock:
            elapsed = time.monotonic() - self.started
            if self.failed:
                return (f"### The build failed\n\n{plain(for_visitors(self.failed), limit=400)}\n\nThe terminal says "
                        "the same (with the full paths); fix "
                        "it and start `python app.py` again.")
            head = f"### {self.stage}{': ' + plain(self.detail) if self.detail else ''}"
            lines = [head, f"`{self.command}` · {elapsed:.0f} s so far"]
            if self.step:
                n, total = self.step
                lines.append(f"step {n} of {total}" + (f" · about {self.left} left in this stage" if self.left
                                                         and "?" not in self.left else ""))
            if self.done:
                lines.append("**Ready**: this page turns into the app in a moment.")
            return "\n\n".join(lines)

    def bar_html(self) -> str:
        with self.lock:
            n, total = self.step or (0, 0)
        value = f'value="{n}" max="{total}"' if total else ""  # no value: an indeterminate bar
        return f'<progress {value} style="width:100%;height:18px"></progress>'

    def log(self) -> str:
        with self.lock:
            return "\n".join(self.lines)


def build_page(progress: BuildProgress) -> gr.Blocks:
    """The page served while building: refreshed every second; reloads into the app when the app answers."""
    import json

    with gr.Blocks(title=TITLE) as page:
        gr.Markdown("# Dialogue summarization: which way of fine-tuning FLAN-T5 is worth it?\n\nNo trained run yet: "
                    "the **offline tiny demo** is being built through the real training pipeline (once). The app "
                    "appears here by itself when it is ready.")
        status = gr.Markdown(progress.markdown(), elem_id="build-status")
        bar = gr.HTML(progress.bar_html(), elem_id="build-bar")
        log = gr.Textbox(progress.log(), label="The build's last lines", lines=LAST_LINES, max_lines=LAST_LINES,
                         interactive=False, elem_id="build-log")
        timer = gr.Timer(1.0)
        timer.tick(lambda: (progress.markdown(), progress.bar_html(), progress.log()), None, [status, bar, log],
                   api_visibility="private", show_progress="hidden")
        page.load(None, None, None, js=RELOAD_JS % json.dumps(TITLE))
    return page
