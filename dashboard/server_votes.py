"""The vote store on a server database (PostgreSQL), for several app replicas behind one address: battles, votes,
named requests and the hourly limits are shared, so a battle drawn on one replica can be voted on another.

    python app.py --votes_db postgresql+psycopg://user:password@db-host/votes     # VOTE_SECRET set on every replica

The same tables and rules as the SQLite store (dashboard/votes.py, whose logic this class inherits): one vote per
battle (the primary key), the flags, the hourly limit per client (decided under a lock per client, so replicas
cannot both count the same allowance), battles bound to their session. What differs: connections come from
SQLAlchemy's pool, each call in one transaction; times are DOUBLE PRECISION; the tables are created once, under an
advisory lock, by whichever replica starts first; and the key that turns addresses into client hashes must be the
same on every replica, so it comes from $VOTE_SECRET (never stored beside the data).
"""

import os
import re
from contextlib import contextmanager

import sqlalchemy

from dashboard.votes import ADDED_COLUMNS, SCHEMA, VoteError, VotesPathError, VoteStore

SCHEMA_LOCK = 727_001  # pg_advisory_xact_lock key: one replica creates the tables at a time


def is_server_url(location) -> bool:
    return "://" in str(location)


class ServerVoteStore(VoteStore):
    REFUSED_BY_RULES = (sqlalchemy.exc.IntegrityError,)

    def __init__(self, url: str, limit_per_hour: int):
        """Refuses in one line a URL SQLAlchemy cannot use or a missing $VOTE_SECRET; a server that does not answer
        at start-up starts the store paused (it tries again, as a full disk does)."""
        if not os.environ.get("VOTE_SECRET"):
            raise VotesPathError("--votes_db on a server needs $VOTE_SECRET, the same on every replica (it turns "
                                 "addresses into client hashes; it is never stored with the votes).")
        try:
            shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
            self.engine = sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as e:
            raise VotesPathError(f"--votes_db {str(url)[:80]!r} is not a database URL this app can use ({e}).") \
                from None
        self.begin(shown, limit_per_hour)
        self.durability = ("Votes are stored in a database server shared by every replica of this app; a committed "
                           "vote survives any replica's crash.")
        self.start()

    @contextmanager
    def db(self):
        """One transaction of a pooled connection; a server that stops answering pauses voting (VoteStore)."""
        try:
            with self.engine.begin() as connection:
                yield Connection(connection)
        except self.REFUSED_BY_RULES:
            raise
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise self.pause(e) from None

    def create(self) -> None:
        with self.db() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            for statement in SCHEMA.split(";"):
                statement = re.sub(r"--[^\n]*", "", statement).replace(" REAL", " DOUBLE PRECISION").strip()
                if statement:
                    db.execute(statement)
            for table, columns in ADDED_COLUMNS.items():
                for name, kind in columns.items():
                    db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")

    def start(self) -> None:
        """The tables (voting starts paused when the server does not answer: it is tried again later)."""
        try:
            self.create()
        except VoteError:
            return
        self.secret, self.ready = self.load_secret(), True

    def shown_error(self, error: BaseException) -> str:
        """The driver's first line only: a server's full message can quote the statement and its values."""
        return str(getattr(error, "orig", error)).splitlines()[0][:200] if str(error) else type(error).__name__

    def load_secret(self) -> bytes:
        return os.environ["VOTE_SECRET"].encode()

    def remove_files(self) -> None:
        """Nothing of a server's is removed."""

    def one_vote_at_a_time(self, db, client) -> None:
        if client is not None:
            db.execute("SELECT pg_advisory_xact_lock(hashtext(:client))", {"client": client})

    def merge(self, records: list) -> tuple[int, int]:
        raise VoteError("A vote mirror is for a SQLite store on a disk that is wiped; a server database keeps the "
                        "votes itself.")


class Connection:
    """What the store's queries need of a connection (sqlite3's shape) on a SQLAlchemy one: execute(sql, params)
    with :name parameters, a result with fetchone/fetchall and description; executemany."""

    def __init__(self, connection):
        self.connection = connection

    def execute(self, sql: str, params=None):
        return Result(self.connection.execute(sqlalchemy.text(sql), params or {}))

    def executemany(self, sql: str, rows: list):
        if rows:
            self.connection.execute(sqlalchemy.text(sql), rows)


class Result:
    def __init__(self, result):
        self.result = result
        self.description = [(key,) for key in result.keys()] if result.returns_rows else None

    def fetchone(self):
        return self.result.fetchone()

    def fetchall(self):
        return self.result.fetchall()

    @property
    def rowcount(self) -> int:
        return self.result.rowcount
