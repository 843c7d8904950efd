"""Training: every module's command runs through this package first, so the environment variables libraries read
at import are checked before any is imported (contract/environment.py, run by importing contract)."""

import contract  # noqa: F401
