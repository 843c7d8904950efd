"""The artifacts contract (see README.md). Importing it first checks the environment variables that libraries
read at import (contract/environment.py): both entry points import contract before any library."""

from contract.environment import check_environment

check_environment()
