"""Child processes that never outlive the process that started them (the app's demo build, a comparison's local
workers): on Linux the child asks the kernel for SIGTERM when its parent dies, however it dies (SIGKILL included)."""

import signal
import sys


def stop_with_parent() -> None:
    """In the child, before it runs: SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG = 1)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def tied_to_parent():
    """subprocess.Popen's preexec_fn for a child that stops with its parent (None where prctl does not exist)."""
    return stop_with_parent if sys.platform == "linux" else None
