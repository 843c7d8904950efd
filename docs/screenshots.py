"""The pictures in README.md and docs/ (compare.png, metrics.png, leaderboard.png), taken from the real app in
headless Chromium (Debian's /usr/bin/chromium through Playwright):

    python -m training --preset tiny
    python -m training --preset tiny --methods lora,dora,ia3 --output_dir artifacts/tiny-peft
    python docs/screenshots.py --run artifacts/tiny --run artifacts/tiny-peft
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIALOGUE = ("#Person1#: Hello, I'd like to book a table for four on Friday evening.\n"
            "#Person2#: Certainly. What time would you like?\n#Person1#: Around seven, near the window if possible.\n"
            "#Person2#: Seven o'clock for four, by the window. May I have your name?\n#Person1#: It's Smith.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="a run folder; repeat for several")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    import app
    from tests.helpers import free_port

    demo = app.create_app([Path(r) for r in args.run])
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    out = Path(args.out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#dialogue textarea").fill(DIALOGUE)
        page.get_by_role("button", name="Summarize with the chosen models").click()
        page.wait_for_function("n => (document.body.innerText.match(/ tokens/g) || []).length >= n", arg=3,
                               timeout=120_000)
        page.locator("#dialogue").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "compare.png"), full_page=True)
        page.get_by_role("tab", name="Metrics").click()
        page.locator("#plot-verdict .js-plotly-plot").wait_for(timeout=60_000)  # the answer and its chart first
        page.evaluate("document.querySelector('#verdict').scrollIntoView()")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "metrics.png"))
        page.goto(f"http://127.0.0.1:{port}/?tab=leaderboard&x=trainable+params&y=ROUGE-1")
        page.locator("#lb-plot .js-plotly-plot").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "leaderboard.png"), full_page=True)
        browser.close()
    app.close_app(demo)
    print(f"wrote {out}/compare.png, metrics.png, leaderboard.png")


if __name__ == "__main__":
    main()
