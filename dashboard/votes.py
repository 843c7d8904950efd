"""Blind votes: battles between two models' summaries and the votes on them, stored in SQLite with their rules
(one vote per battle, flags, the hourly limit). The ratings they give are scoring/preferences.py's.

    python -m dashboard.votes --db artifacts/tiny/votes.sqlite --csv votes.csv    # export + print the ratings

The server records every battle it shows (an unguessable id, the dialogue, which model sat in which position, the
two texts) and every accepted vote (one per battle) in the table `votes`. The browser only ever holds the battle
id. SQLite in WAL mode with synchronous=FULL: a committed vote survives a killed server; one connection per call,
so concurrent voters never share a transaction; the one-vote rule is the table's primary key, not a check-then-
write race.

Who voted is recorded without storing who they are: a client is HMAC-SHA256(server secret, its address), cut to 16
hex digits; the secret is $VOTE_SECRET or a file beside the database (<db>.key, mode 600), so the database alone
cannot be turned back into addresses. Votes stay in the table with a `flag` when they are not counted:
`non_anonymous` (ANYONE, from any address, had asked for named summaries of that dialogue before the vote: the
texts could be looked up under their names), `seen_named` (an earlier vote of the same client revealed who wrote
one of the battle's summaries: it could vote by recognising the text) or `rate_limited` (more than the hourly limit
from one client). Ratings use unflagged votes. A test dialogue whose named summaries anyone asked for also leaves
the battle pool: a second address (a phone, a VPN) can drain the pool, visibly, but cannot steer the verdict. The
database and its key are created readable by their owner only (600).
"""

import argparse
import hashlib
import hmac
import itertools
import os
import random
import re
import secrets
import sqlite3
import threading
import time
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from contract.files import VOTES_FILE, without_paths
from scoring.preferences import MIN_VOTES, counted, ratings_table

CHOICES = ("a", "b", "tie", "both_bad")
BATTLE_TTL_SECONDS = 24 * 3600   # a battle left open longer than a day is expired: its vote is refused
MAX_TEXT = 20_000                # the longest dialogue or summary a battle stores
RETRY_SECONDS = 5                # while voting is paused, how often the store tries to write again
VOTE_LIMIT_PER_HOUR = 60         # counted votes per client per hour (0 = no limit): a person reads ~1 battle/min
FLAGS = ("non_anonymous", "seen_named", "rate_limited")

SOURCES = ("test", "pasted")     # where a battle's dialogue came from


def sql_list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


VOTES_TABLE = f"""CREATE TABLE IF NOT EXISTS votes (
    battle_id TEXT PRIMARY KEY REFERENCES battles(id),
    choice TEXT NOT NULL CHECK (choice IN ({sql_list(CHOICES)})),
    created_at REAL NOT NULL
);"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS battles (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ({sql_list(SOURCES)})),
    dialogue_id TEXT,
    dialogue TEXT NOT NULL CHECK (length(dialogue) <= {MAX_TEXT}),
    model_a TEXT NOT NULL, model_b TEXT NOT NULL CHECK (model_b <> model_a),
    summary_a TEXT NOT NULL CHECK (length(summary_a) <= {MAX_TEXT}),
    summary_b TEXT NOT NULL CHECK (length(summary_b) <= {MAX_TEXT})
);
{VOTES_TABLE}
CREATE TABLE IF NOT EXISTS named_requests (   -- who asked for NAMED summaries of which text (its hash only)
    client TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS named_by_client ON named_requests (client, text_hash);
CREATE INDEX IF NOT EXISTS named_by_text ON named_requests (text_hash);
"""
ADDED_COLUMNS = {  # columns newer than the first schema: added to an older votes.sqlite in place
    "battles": {"client": "TEXT", "session": "TEXT"},
    "votes": {"client": "TEXT", "flag": f"TEXT CHECK (flag IN ({sql_list(FLAGS)}))"},
}


class VoteError(ValueError):
    """A vote or battle the rules refuse; the message says why and is shown to the voter."""


@dataclass
class Battle:
    id: str
    dialogue: str
    summary_a: str
    summary_b: str
    model_a: str
    model_b: str


def text_hash(text: str) -> str:
    """The same text however it was spaced (pasted twice, or taken from the page)."""
    return hashlib.sha256(re.sub(r"\s+", " ", text).strip().encode()).hexdigest()


def check_length(name: str, text: str) -> None:
    if len(text) > MAX_TEXT:
        raise VoteError(f"The {name} has {len(text):,} characters; the limit for a battle is {MAX_TEXT:,}.")


def seen_by(db, client: str) -> set[str]:
    """Hashes of the summaries whose names `client`'s votes revealed to it (flagged votes reveal them too)."""
    rows = db.execute("SELECT b.summary_a, b.summary_b FROM votes v JOIN battles b ON b.id = v.battle_id "
                      "WHERE v.client = :client", {"client": client}).fetchall()
    return {text_hash(text) for row in rows for text in row}


# What a mirror record of each kind becomes: its table and the columns this version stores (vote_mirror.py)
MIRRORED = {
    "battle": ("battles", ("id", "created_at", "source", "dialogue_id", "dialogue", "model_a", "model_b", "summary_a",
                           "summary_b", "client", "session")),
    "vote": ("votes", ("battle_id", "choice", "created_at", "client", "flag")),
    "named": ("named_requests", ("client", "text_hash", "created_at")),
}

JOURNALS = ("wal", "delete")  # wal: a local disk; delete: a Storage Bucket mount (no WAL there, one writer)


class VotesPathError(ValueError):
    """--votes_db names something that cannot hold a votes database (a folder, a missing parent, no permission):
    one line for the person who chose it; nothing is created or moved."""


def check_votes_path(path: Path, option: str = "--votes_db", writable: bool = True) -> None:
    """Refuses, before any model is loaded, a votes path that SQLite could never open as a file of its own, and
    (writable) one this user cannot write: a path the person chose. The default path in a run folder on a read-only
    disk is not refused: voting starts paused there (VoteStore.start)."""
    path = Path(path)
    if path.is_dir():
        raise VotesPathError(f"{option} {path} is a folder: name a file inside it, e.g. {path / VOTES_FILE}.")
    if path.exists() and not path.is_file():
        raise VotesPathError(f"{option} {path} is not a regular file: name a file for the votes database.")
    if not path.parent.is_dir():
        raise VotesPathError(f"{option} {path}: its folder {path.parent} does not exist; create it or choose another.")
    if not writable:
        return
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise VotesPathError(f"{option} {path} cannot be read and written by this user; fix its permissions.")
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise VotesPathError(f"{option} {path}: its folder {path.parent} is not writable by this user.")


def is_damaged(path: Path) -> bool:
    """True for a regular file that SQLite reads but whose content fails its integrity check (or is not a database
    at all); False for a sound database, a missing file and everything that is not a regular file."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    except sqlite3.DatabaseError as e:
        return "not a database" in str(e) or "malformed" in str(e)


VOTES_FRAME = ("SELECT v.battle_id, v.choice, v.created_at AS voted_at, v.client, v.flag, b.source, b.dialogue_id, "
               "b.model_a, b.model_b, b.summary_a, b.summary_b FROM votes v JOIN battles b ON b.id = v.battle_id "
               "ORDER BY v.created_at")


class VoteStore:
    REFUSED_BY_RULES = (sqlite3.IntegrityError,)  # a rule of the tables (one vote per battle) the data breaks

    def __init__(self, path: Path, limit_per_hour: int = VOTE_LIMIT_PER_HOUR, journal: str = "wal", mirror=None):
        """A regular file that fails SQLite's integrity check is moved aside (kept, with a timestamp) and a new one
        started; `notice` then says so on the page. Anything else that cannot be opened (a folder, a missing parent,
        no permission) raises VotesPathError and moves nothing. journal: 'wal' (a local disk: a connection per call,
        readers never block the writer) or 'delete' (a Storage Bucket mounted as a volume: SQLite's rollback journal
        through ONE connection, used by any thread under a lock). mirror.record(kind, row) sees every battle, vote and
        named request as it is stored (dashboard/vote_mirror.py)."""
        if journal not in JOURNALS:
            raise ValueError(f"journal {journal!r}: use one of {', '.join(JOURNALS)}")
        self.path, self.journal, self.shared, self.lock = Path(path), journal, None, threading.Lock()
        self.begin(str(self.path), limit_per_hour, mirror)
        self.durability = f"Votes are stored in {self.path.name} on this machine; a committed vote survives a crash."
        check_votes_path(self.path, writable=False)
        if is_damaged(self.path):
            self.move_aside()
        self.start()

    def begin(self, name: str, limit_per_hour: int, mirror=None) -> None:
        """The state every store keeps, whatever holds its tables; `name` says which database in the log."""
        self.name, self.limit_per_hour, self.mirror, self.notice = name, limit_per_hour, mirror, None
        self.failed: Optional[str] = None  # why the database cannot be written (voting paused until it can)
        self.last_try, self.ready, self.secret = 0.0, False, None
        self.unrecorded: list[dict] = []  # named requests that came while paused: written before voting resumes

    def start(self) -> None:
        """The tables and the key. On a full or read-only disk voting starts paused (one line in the log) and a
        file this call created is removed: nothing is left behind; check_open tries again later."""
        created = not self.path.exists()
        try:
            self.create()
            self.secret = self.load_secret()
        except (VoteError, OSError) as e:
            if not isinstance(e, VoteError):
                self.pause(e)
            if created:
                self.remove_files()
            return
        self.ready = True

    def remove_files(self) -> None:
        """The database's files, when this store created them and could not make them a database."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def move_aside(self) -> None:
        kept = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            if Path(f"{self.path}{suffix}").is_file():
                os.replace(f"{self.path}{suffix}", f"{kept}{suffix}")
        self.notice = (f"The votes database {self.path.name} failed SQLite's integrity check; it was kept as "
                       f"{kept.name} and a new one started. Nothing was deleted.")

    def connect(self) -> sqlite3.Connection:
        created = not self.path.exists()
        if created:  # owner-only from the first byte (SQLite gives -wal/-shm the same mode)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            # autocommit (explicit transactions); any thread: 'delete' shares one connection among Gradio's workers
            # (under self.lock, so never two at once), which sqlite3 refuses unless check_same_thread is off
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error:
            if created:  # a full disk: no empty file left behind
                self.remove_files()
            raise
        return db

    @contextmanager
    def db(self):
        """A connection for one call: its own (wal), or the one shared connection, held under the lock (delete).
        A database that stops working while serving (its folder deleted, its disk gone) pauses voting (`failed`)
        with a VoteError the page shows; a rule the data breaks (sqlite3.IntegrityError) is the caller's."""
        try:
            if self.journal == "wal":
                with closing(self.connect()) as db:
                    yield db
                return
            with self.lock:
                if self.shared is None:
                    self.shared = self.connect()
                    self.shared.execute("PRAGMA journal_mode=DELETE")
                yield self.shared
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise self.pause(e) from None

    def pause(self, error: BaseException) -> VoteError:
        """Voting pauses (a full or read-only disk, a database gone): said once in the log, not once per vote."""
        if not self.failed:
            print(f"votes: paused: {self.name} cannot be written ({error}); voting resumes by itself once it can",
                  flush=True)
        self.failed = f"the votes database cannot be written ({self.shown_error(error)})"
        self.last_try = time.monotonic()
        return VoteError(self.paused())

    def shown_error(self, error: BaseException) -> str:
        """An error as visitors may read it: no server path."""
        return without_paths(str(error), self.path.parent)

    def paused(self) -> str:
        return f"Voting is paused: {self.failed}. It resumes by itself once the database can be written again."

    def check_open(self) -> None:
        """Votes are taken only while every named request is recorded (else a vote could not be trusted to be
        blind). Paused: at most every RETRY_SECONDS the store tries again to start and to write what it holds;
        once that works voting resumes, said once in the log."""
        if self.failed and time.monotonic() - self.last_try >= RETRY_SECONDS:
            self.last_try = time.monotonic()
            with suppress(VoteError):
                if not self.ready:
                    self.start()
                if self.ready:
                    self.write_unrecorded()
                    self.failed = None
                    print(f"votes: resumed: {self.name} can be written again", flush=True)
        if self.failed:
            raise VoteError(self.paused())

    def write_unrecorded(self) -> None:
        with self.db() as db:
            db.executemany("INSERT INTO named_requests VALUES (:client, :text_hash, :created_at)", self.unrecorded)
        for row in self.unrecorded:
            self.record("named", row)
        self.unrecorded = []

    def record(self, kind: str, row: dict) -> None:
        if self.mirror is not None:
            self.mirror.record(kind, row)

    def create(self) -> None:
        with self.db() as db:
            db.execute(f"PRAGMA journal_mode={'WAL' if self.journal == 'wal' else 'DELETE'}")  # persists in the file
            db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            self.widen_flag_check(db)

    @staticmethod
    def widen_flag_check(db: sqlite3.Connection) -> None:
        """A file written before a flag existed checks `flag` against the older list, and SQLite cannot alter a
        CHECK: the votes table is copied into one with today's list (one transaction, every row kept)."""
        votes_sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'votes'").fetchone()[0]
        if all(f"'{flag}'" in votes_sql for flag in FLAGS):
            return
        columns = [row[1] for row in db.execute("PRAGMA table_info(votes)")]
        db.execute("BEGIN IMMEDIATE")
        db.execute("ALTER TABLE votes RENAME TO votes_before_flags")
        db.execute(VOTES_TABLE.rstrip(";"))
        for name, kind in ADDED_COLUMNS["votes"].items():
            db.execute(f"ALTER TABLE votes ADD COLUMN {name} {kind}")
        names = ", ".join(columns)
        db.execute(f"INSERT INTO votes ({names}) SELECT {names} FROM votes_before_flags")
        db.execute("DROP TABLE votes_before_flags")
        db.execute("COMMIT")

    def load_secret(self) -> bytes:
        if os.environ.get("VOTE_SECRET"):
            return os.environ["VOTE_SECRET"].encode()
        key = self.path.with_name(self.path.name + ".key")
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return key.read_text().strip().encode()

    def client_key(self, address: Optional[str]) -> Optional[str]:
        """Who, without who: a keyed hash of the client's address (None when it is unknown, or while the store
        could not start)."""
        if not address or self.secret is None:
            return None
        return hmac.new(self.secret, address.encode(), hashlib.sha256).hexdigest()[:16]

    def record_named_request(self, client: Optional[str], text: str) -> None:
        """Someone (`client`, None when unknown) saw named summaries of `text`: from now on no vote on a battle over
        that text counts, whoever casts it, and it leaves the test battle pool."""
        row = {"client": client or "", "text_hash": text_hash(text), "created_at": time.time()}
        try:
            self.check_open()
            with self.db() as db:
                db.execute("INSERT INTO named_requests VALUES (:client, :text_hash, :created_at)", row)
        except VoteError:
            self.unrecorded.append(row)  # written before any vote is taken again
            raise
        self.record("named", row)

    def named_texts(self) -> set[str]:
        """Hashes of every text whose named summaries anyone has asked for."""
        with self.db() as db:
            return {row[0] for row in db.execute("SELECT DISTINCT text_hash FROM named_requests").fetchall()}

    def pair_counts(self, models: list[str]) -> dict[tuple, int]:
        counts = {pair: 0 for pair in itertools.combinations(sorted(models), 2)}
        with self.db() as db:
            for a, b, n in db.execute("SELECT CASE WHEN model_a < model_b THEN model_a ELSE model_b END, CASE WHEN "
                                      "model_a < model_b THEN model_b ELSE model_a END, count(*) FROM battles "
                                      "GROUP BY 1, 2").fetchall():
                if (a, b) in counts:
                    counts[(a, b)] = n
        return counts

    def next_pair(self, models: list[str], rng: random.Random, usable=None) -> tuple[str, str]:
        """The least-shown pair (pairs spread evenly), in random order: which model is A is a coin flip. Only pairs
        `usable(pair)` accepts compete, while there are any."""
        counts = self.pair_counts(models)
        if usable is not None and any(usable(pair) for pair in counts):
            counts = {pair: n for pair, n in counts.items() if usable(pair)}
        fewest = min(counts.values())
        pair = list(rng.choice([p for p, n in counts.items() if n == fewest]))
        rng.shuffle(pair)
        return pair[0], pair[1]

    def seen_named(self, client: Optional[str]) -> set[str]:
        """Hashes of every summary `client` has seen revealed under its model's name (each of its votes reveals
        both of its battle's): a battle showing one of them again could be voted by recognising the text."""
        if client is None:
            return set()
        with self.db() as db:
            return seen_by(db, client)

    def add_battle(self, source: str, dialogue: str, dialogue_id: Optional[str], model_a: str, model_b: str,
                   summary_a: str, summary_b: str, client: Optional[str] = None,
                   session: Optional[str] = None) -> Battle:
        self.check_open()
        for name, text in (("dialogue", dialogue), ("summary A", summary_a), ("summary B", summary_b)):
            check_length(name, text)
        battle = Battle(secrets.token_urlsafe(16), dialogue, summary_a, summary_b, model_a, model_b)
        row = {"id": battle.id, "created_at": time.time(), "source": source, "dialogue_id": dialogue_id,
               "dialogue": dialogue, "model_a": model_a, "model_b": model_b, "summary_a": summary_a,
               "summary_b": summary_b, "client": client, "session": session}
        with self.db() as db:
            db.execute(f"INSERT INTO battles ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})", row)
        self.record("battle", row)
        return battle

    def flag_for(self, db, client: Optional[str], dialogue: str, summaries: tuple[str, str]) -> Optional[str]:
        """Why a vote by `client` on a battle over `dialogue` showing `summaries` would not count (None: it counts)."""
        if db.execute("SELECT 1 FROM named_requests WHERE text_hash = :hash LIMIT 1",
                      {"hash": text_hash(dialogue)}).fetchone():
            return "non_anonymous"
        if client is None:
            return None
        if self.limit_per_hour:
            recent = db.execute("SELECT count(*) FROM votes WHERE client = :client AND created_at > :since AND "
                                "flag IS NULL", {"client": client, "since": time.time() - 3600}).fetchone()[0]
            if recent >= self.limit_per_hour:
                return "rate_limited"
        if {text_hash(s) for s in summaries} & seen_by(db, client):
            return "seen_named"
        return None

    def one_vote_at_a_time(self, db, client: Optional[str]) -> None:
        """Where several replicas share the store, one client's votes are decided one after another, so that the
        hourly limit holds across them (dashboard/server_votes.py locks per client). One SQLite file serves one app:
        nothing here."""

    def cast(self, battle_id, choice, client: Optional[str] = None, session: Optional[str] = None) -> dict:
        """Record one vote: the revealed names and the vote's flag (None = counted). Refuses an unknown or
        expired id, a bad choice, a second vote, and a vote from another session than the one that drew it."""
        if not isinstance(choice, str) or choice not in CHOICES:
            raise VoteError(f"The choice must be one of {', '.join(CHOICES)} (got {str(choice)[:40]!r}).")
        if not isinstance(battle_id, str) or not 0 < len(battle_id) <= 64:
            raise VoteError("That is not a battle id this server issued.")
        self.check_open()
        with self.db() as db:
            row = db.execute("SELECT model_a, model_b, created_at, dialogue, summary_a, summary_b, session "
                             "FROM battles WHERE id = :id", {"id": battle_id}).fetchone()
            if row is None:
                raise VoteError("That is not a battle id this server issued: start a new battle.")
            if time.time() - row[2] > BATTLE_TTL_SECONDS:
                raise VoteError("This battle has expired (older than a day): start a new battle.")
            if row[6] is not None and row[6] != session:
                raise VoteError("This battle was drawn in another browser session; start a new battle here.")
            self.one_vote_at_a_time(db, client)
            flag = self.flag_for(db, client, row[3], (row[4], row[5]))
            vote = {
                "battle_id": battle_id,
                "choice": choice,
                "created_at": time.time(),
                "client": client,
                "flag": flag,
            }
            try:
                db.execute("INSERT INTO votes (battle_id, choice, created_at, client, flag) VALUES (:battle_id, "
                           ":choice, :created_at, :client, :flag)", vote)
            except self.REFUSED_BY_RULES:
                raise VoteError("This battle already has a vote; the first one stands. Start a new battle.") from None
        self.record("vote", vote)
        return {"model_a": row[0], "model_b": row[1], "choice": choice, "flag": flag}

    def merge(self, records: list) -> tuple[int, int]:
        """Records read back from a mirror (vote_mirror.read_back) into this store; rows it holds already are left
        as they are. Battles first (votes refer to them). Only the columns this version knows are taken (a newer
        app may have written more); a record that is not an object, of no known kind, or that the table's rules
        refuse is skipped and counted. Returns (rows added, records skipped)."""
        order = {"battle": 0, "named": 1, "vote": 2}
        usable = [r for r in records if isinstance(r, dict) and r.get("kind") in MIRRORED]
        added, skipped = 0, len(records) - len(usable)
        with self.db() as db:
            db.execute("BEGIN")
            for record in sorted(usable, key=lambda r: order[r["kind"]]):
                try:
                    added += self.insert_record(db, record)
                except sqlite3.Error:  # a NOT NULL, CHECK or foreign key the record breaks: that statement only
                    skipped += 1
            db.execute("COMMIT")
        return added, skipped

    @staticmethod
    def insert_record(db: sqlite3.Connection, record: dict) -> int:
        table, columns = MIRRORED[record["kind"]]
        row = {c: record.get(c) for c in columns}
        names = ", ".join(f'"{c}"' for c in columns)
        values = ", ".join(f":{c}" for c in columns)
        if table == "named_requests":  # no key of its own: an identical row already there is the same request
            same = " AND ".join(f'"{c}" IS :{c}' for c in columns)
            sql = (
                f"INSERT INTO {table} ({names}) SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {same})"
            )
        else:
            # a row already there (its key) is left as it is; any other broken rule raises (counted as skipped)
            sql = f"INSERT INTO {table} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"
        return db.execute(sql, row).rowcount

    def votes_frame(self) -> pd.DataFrame:
        """Every vote with its battle, flagged ones included (`flag`; None = counted in the ratings)."""
        with self.db() as db:
            rows = db.execute(VOTES_FRAME)
            return pd.DataFrame(rows.fetchall(), columns=[d[0] for d in rows.description])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db", type=Path, required=True, help="the votes database (e.g. artifacts/<run>/votes.sqlite)"
    )
    parser.add_argument("--csv", type=Path, help="write every vote with its battle to this CSV file")
    args = parser.parse_args(argv)
    if not args.db.exists():
        parser.exit(2, f"error: {args.db} does not exist. The app creates it at <run>/votes.sqlite (or --votes_db).\n")
    everything = VoteStore(args.db).votes_frame()
    if args.csv:
        everything.to_csv(args.csv, index=False)
        print(f"wrote {len(everything)} votes to {args.csv} (flagged ones too: column flag)")
    votes = counted(everything)
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    if len(votes) < MIN_VOTES:
        print(f"{len(votes)} votes: not enough votes yet for ratings (at least {MIN_VOTES}).")
        return
    table = ratings_table(votes, models)
    print(f"Bradley-Terry strengths from {len(votes)} votes (log scale, 0 = average; 95% bootstrap CI):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
