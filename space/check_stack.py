"""Serve a run with the interpreter that runs this script and print its answers as one JSON line: run it with the
project's environment and with the Space's (space/requirements.txt in a Python 3.12 venv) and compare.

    python3.12 -m venv ../space-venv && ../space-venv/bin/pip install -r space/requirements.txt
    python space/check_stack.py artifacts/tiny 7911 > main.json
    ../space-venv/bin/python space/check_stack.py artifacts/tiny 7912 > space.json
    SPACES_ZERO_GPU=true PYTHONPATH=tests/stand_ins ../space-venv/bin/python space/check_stack.py artifacts/tiny 7913
"""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
DIALOGUES = ["#Person1#: I need a ticket to Boston.\n#Person2#: When would you like to leave?\n#Person1#: On Monday.",
             "#Person1#: Did you see Tom at the party?\n#Person2#: Yes, he was with Mary and two friends."]


def main(run: str, port: str) -> None:
    app = subprocess.Popen([sys.executable, "app.py", "--run", run, "--port", port, "--votes_db",
                            f"/tmp/check-stack-votes-{port}.sqlite"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                if app.poll() is not None:
                    sys.exit(f"the app stopped: {app.stdout.read()[-3000:]}")
                time.sleep(1)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        answers = {
            d: {m: v.get("summary", v.get("error")) for m, v in client.predict(d, api_name="/summarize_all").items()}
            for d in DIALOGUES
        }
        battle = client.predict("", api_name="/vote_battle")
        answers["vote"] = client.predict(battle["battle_id"], "a", api_name="/vote_cast")["choice"]
        print(json.dumps(answers, sort_keys=True))
    finally:
        app.terminate()
        app.wait()


if __name__ == "__main__":
    main(*sys.argv[1:3])
