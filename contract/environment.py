"""Environment variables that libraries read when they are imported, checked before they are: a bad value is one
line and exit 2, not a traceback from inside huggingface_hub or a stream of library warnings. The project's own
variables are checked where their options are (app.py's OPTIONS); those read at import are here too.

Imported first by both entry points (`contract/__init__.py` runs `check_environment()`), so nothing below may
import a third-party library.
"""

import os
import sys

WHOLE = "a whole number"
NUMBER = "a number"
LEVELS = ("debug", "info", "warning", "error", "critical")

# variable -> (kind, allowed choices or None, who reads it)
READ_AT_IMPORT = {
    "HF_HUB_ETAG_TIMEOUT": (WHOLE, None, "huggingface_hub"),
    "HF_HUB_DOWNLOAD_TIMEOUT": (WHOLE, None, "huggingface_hub"),
    "HF_HUB_VERBOSITY": (None, LEVELS, "huggingface_hub"),
    "TRANSFORMERS_VERBOSITY": (None, ("detail", *LEVELS), "transformers"),
    "OMP_NUM_THREADS": (WHOLE, None, "torch (OpenMP)"),
    "MKL_NUM_THREADS": (WHOLE, None, "torch (MKL)"),
    "FAILED_BUILD_SHOWN_SECONDS": (NUMBER, None, "app.py"),
}


def problem(name: str, value: str) -> str | None:
    kind, choices, reader = READ_AT_IMPORT[name]
    if choices is not None:
        return None if value in choices else f"use one of {', '.join(choices)}"
    try:
        number = int(value) if kind == WHOLE else float(value)
    except ValueError:
        number = None
    if number is None or number < (1 if kind == WHOLE and name.endswith("THREADS") else 0) or number != number:
        return f"give {kind} ({reader} reads it at start-up)"
    return None


def check_environment() -> None:
    for name in READ_AT_IMPORT:
        value = os.environ.get(name)
        if value is not None and value != "" and (why := problem(name, value)):
            print(f"error: ${name}={value[:40]!r}: {why}, or unset it.", file=sys.stderr, flush=True)
            sys.exit(2)
