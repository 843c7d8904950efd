"""How every training command ends on an expected error: one line naming what was wrong and what to do, exit
code 2, no traceback (a traceback means a bug, and is still shown for those). A full disk is one of them
(run_folder.DiskFull, a RunFolderError)."""

import sys

from contract.files import ArtifactError
from training.config import ConfigError
from training.data import DataError
from training.run_folder import AlreadyComplete, RunFolderError

EXPECTED = (DataError, ConfigError, RunFolderError, ArtifactError)
def run_cli(main):
    try:
        return main()
    except AlreadyComplete as e:  # --resume on finished work: nothing to do is success
        print(e)
    except EXPECTED as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

