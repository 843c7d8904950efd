"""P10: seconds from `python app.py --preset quick` on a fresh copy of the project to a page that serves.

    python p10_quick_preset.py            # the measurement (about a quarter of an hour on 2 CPU cores)
    python p10_quick_preset.py --smoke    # mechanics only: one training step, 8 validation, 2 test dialogues
    python p10_quick_preset.py --smoke --keep_run /tmp/quick   # ... and a copy of the run it built, to read

No Hub here, so what the preset downloads is stood in for, and said in the row: google/flan-t5-small is its
architecture (../shared/models/flan-t5-small-config) with random weights, saved once before the clock starts (the
download it replaces is not timed), the real FLAN-T5 tokenizer, and ../shared's DialogSum (`--data`) instead of the
Hub's. Training and generation cost the same per token whatever the weights; random weights never write an
end-of-summary token, so every summary runs to the 200-token cap: this time is an upper bound of the real one,
whose summaries are shorter. The quality of such a run means nothing (and is not reported).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, base_arguments, fresh_copy, record, wait_for_app

PORT = 7871


def random_flan_t5_small(folder: Path) -> Path:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(SHARED / "models" / "flan-t5-small-config")) \
        .save_pretrained(folder)
    return folder


def main():
    parser = base_arguments(__doc__)
    parser.add_argument("--keep_run", type=Path, help="copy the run the app built (artifacts/quick) here")
    args = parser.parse_args()
    if not (SHARED / "models" / "flan-t5-small-config").is_dir():
        raise SystemExit("P10 needs ../shared (the flan-t5-small config, tokenizer and DialogSum)")
    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_copy(Path(tmp) / "project")
        base = random_flan_t5_small(Path(tmp) / "flan-t5-small-random")
        training = ["--base_model", str(base), "--tokenizer", str(SHARED / "models" / "flan-t5-tokenizer"),
                    "--data", str(SHARED / "data" / "dialogsum")]
        if args.smoke:
            training += ["--max_steps", "1", "--batch_size", "2", "--max_eval_samples", "8", "--eval_limit", "2",
                         "--retention_data", "none"]
        command = [sys.executable, "app.py", "--preset", "quick", "--port", str(PORT), *training]
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=project, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            seconds = wait_for_app(proc, PORT, 3600, start)["app"]  # the app itself, not the build page
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        if args.keep_run:
            shutil.copytree(project / "artifacts" / "quick", args.keep_run)
    record(
        "P10",
        seconds,
        20 * 60.0,
        "seconds from `python app.py --preset quick` (fresh copy) to a serving page; baseline = the 20-minute goal",
        "<= 1200 s on 2 CPU cores",
        args.results,
        app_command="python app.py --preset quick --base_model <random flan-t5-small> --tokenizer "
        "../shared/models/flan-t5-tokenizer --data ../shared/data/dialogsum" + " ".join(["", *training[6:]]),
        setup="google/flan-t5-small stood in for by its architecture with random weights (../shared config; "
        "its download not timed), the real FLAN-T5 tokenizer, ../shared DialogSum (its dev split as train "
        "and validation); random weights generate to the 200-token cap: an upper bound of the real time",
    )


if __name__ == "__main__":
    main()
