"""Blind votes: battles between two models' summaries, stored in SQLite, and the ratings they give.

    python -m dashboard.votes --db artifacts/tiny/votes.sqlite --csv votes.csv    # export + print the ratings

The server records every battle it shows (an unguessable id, the dialogue, which model sat in which position, the
two texts) and every accepted vote (one per battle) in the table `votes`. The browser only ever holds the battle
id. SQLite in WAL mode with synchronous=FULL: a committed vote survives a killed server; one connection per call,
so concurrent voters never share a transaction; the one-vote rule is the table's primary key, not a check-then-
write race.
"""

import argparse
import itertools
import random
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

CHOICES = ("a", "b", "tie", "both_bad")
BATTLE_TTL_SECONDS = 24 * 3600   # a battle left open longer than a day is expired: its vote is refused
MAX_TEXT = 20_000                # the same bound as a pasted dialogue
MIN_VOTES = 20                   # below this, the ratings say "not enough votes yet"

SCHEMA = """
CREATE TABLE IF NOT EXISTS battles (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('test', 'pasted')),
    dialogue_id TEXT,
    dialogue TEXT NOT NULL CHECK (length(dialogue) <= 20000),
    model_a TEXT NOT NULL, model_b TEXT NOT NULL CHECK (model_b <> model_a),
    summary_a TEXT NOT NULL CHECK (length(summary_a) <= 20000),
    summary_b TEXT NOT NULL CHECK (length(summary_b) <= 20000)
);
CREATE TABLE IF NOT EXISTS votes (
    battle_id TEXT PRIMARY KEY REFERENCES battles(id),
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    created_at REAL NOT NULL
);
"""


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


class VoteStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self.connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; persists in the file
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit transactions
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def pair_counts(self, models: list[str]) -> dict[tuple, int]:
        counts = {pair: 0 for pair in itertools.combinations(sorted(models), 2)}
        with closing(self.connect()) as db:
            for a, b, n in db.execute("SELECT min(model_a, model_b), max(model_a, model_b), count(*) FROM battles "
                                      "GROUP BY 1, 2"):
                if (a, b) in counts:
                    counts[(a, b)] = n
        return counts

    def next_pair(self, models: list[str], rng: random.Random) -> tuple[str, str]:
        """The least-shown pair (pairs spread evenly), in random order: which model is A is a coin flip."""
        counts = self.pair_counts(models)
        fewest = min(counts.values())
        pair = list(rng.choice([p for p, n in counts.items() if n == fewest]))
        rng.shuffle(pair)
        return pair[0], pair[1]

    def add_battle(self, source: str, dialogue: str, dialogue_id: Optional[str], model_a: str, model_b: str,
                   summary_a: str, summary_b: str) -> Battle:
        for name, text in (("dialogue", dialogue), ("summary A", summary_a), ("summary B", summary_b)):
            if len(text) > MAX_TEXT:
                raise VoteError(f"The {name} has {len(text):,} characters; the limit is {MAX_TEXT:,}.")
        battle = Battle(secrets.token_urlsafe(16), dialogue, summary_a, summary_b, model_a, model_b)
        with closing(self.connect()) as db:
            db.execute("INSERT INTO battles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (battle.id, time.time(), source, dialogue_id, dialogue, model_a, model_b, summary_a, summary_b))
        return battle

    def cast(self, battle_id, choice) -> dict:
        """Record one vote; returns the revealed names. Refuses an unknown/expired id, a bad choice, a 2nd vote."""
        if not isinstance(choice, str) or choice not in CHOICES:
            raise VoteError(f"The choice must be one of {', '.join(CHOICES)} (got {str(choice)[:40]!r}).")
        if not isinstance(battle_id, str) or not 0 < len(battle_id) <= 64:
            raise VoteError("That is not a battle id this server issued.")
        with closing(self.connect()) as db:
            row = db.execute("SELECT model_a, model_b, created_at FROM battles WHERE id = ?", (battle_id,)).fetchone()
            if row is None:
                raise VoteError("That is not a battle id this server issued: start a new battle.")
            if time.time() - row[2] > BATTLE_TTL_SECONDS:
                raise VoteError("This battle has expired (older than a day): start a new battle.")
            try:
                db.execute("INSERT INTO votes VALUES (?, ?, ?)", (battle_id, choice, time.time()))
            except sqlite3.IntegrityError:
                raise VoteError("This battle already has a vote; the first one stands. Start a new battle.") from None
        return {"model_a": row[0], "model_b": row[1], "choice": choice}

    def votes_frame(self) -> pd.DataFrame:
        with closing(self.connect()) as db:
            return pd.read_sql_query(
                "SELECT v.battle_id, v.choice, v.created_at AS voted_at, b.source, b.dialogue_id, b.model_a, "
                "b.model_b, b.summary_a, b.summary_b FROM votes v JOIN battles b ON b.id = v.battle_id "
                "ORDER BY v.created_at", db)


# --- ratings ------------------------------------------------------------------------------------------------

def outcomes(votes: pd.DataFrame) -> pd.DataFrame:
    """winner, loser, weight rows: a decisive vote is one win; a tie is half a win each way; both-bad is left out
    (it says neither summary is good, not which is better)."""
    rows = []
    for v in votes.itertuples():
        if v.choice == "a":
            rows.append((v.model_a, v.model_b, 1.0))
        elif v.choice == "b":
            rows.append((v.model_b, v.model_a, 1.0))
        elif v.choice == "tie":
            rows += [(v.model_a, v.model_b, 0.5), (v.model_b, v.model_a, 0.5)]
    return pd.DataFrame(rows, columns=["winner", "loser", "weight"])


def bradley_terry(results: pd.DataFrame, models: list[str]) -> dict[str, float]:
    """Log-strengths theta with P(i beats j) = 1 / (1 + exp(theta_j - theta_i)), mean 0, fitted by choix's
    iterative Luce spectral ranking (maximum likelihood). choix takes unweighted (winner, loser) pairs, so a
    decisive vote enters twice and a tie once each way: the same likelihood as 1 win / half a win each, times 2.
    A small regulariser (alpha) keeps a model that never won finite."""
    import choix

    index = {m: i for i, m in enumerate(models)}
    pairs = [(index[r.winner], index[r.loser]) for r in results.itertuples() for _ in range(int(r.weight * 2))]
    theta = choix.ilsr_pairwise(len(models), pairs, alpha=0.01, max_iter=1000)
    return dict(zip(models, theta - theta.mean()))


def ratings_table(votes: pd.DataFrame, models: list[str], resamples: int = 200, seed: int = 0) -> pd.DataFrame:
    """model, strength (log BT), ci_low, ci_high (95% bootstrap over votes), wins, games."""
    results = outcomes(votes)
    point = bradley_terry(results, models)
    rng = np.random.default_rng(seed)
    draws = [bradley_terry(results.iloc[rng.integers(0, len(results), len(results))], models)
             for _ in range(resamples)] if len(results) else []
    rows = []
    for m in models:
        samples = [d[m] for d in draws]
        low, high = np.quantile(samples, [0.025, 0.975]) if samples else (np.nan, np.nan)
        rows.append({"model": m, "strength": point[m], "ci_low": float(low), "ci_high": float(high),
                     "wins": float(results.loc[results["winner"] == m, "weight"].sum()),
                     "games": float(results.loc[(results["winner"] == m) | (results["loser"] == m), "weight"].sum())})
    return pd.DataFrame(rows).sort_values("strength", ascending=False).reset_index(drop=True)


def win_rates(votes: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Row beats column: share of their decisive-or-tied games the row model won (ties count half); NaN = unmet."""
    results = outcomes(votes)
    table = pd.DataFrame(np.nan, index=models, columns=models)
    for a, b in itertools.permutations(models, 2):
        won = results.loc[(results["winner"] == a) & (results["loser"] == b), "weight"].sum()
        lost = results.loc[(results["winner"] == b) & (results["loser"] == a), "weight"].sum()
        if won + lost:
            table.loc[a, b] = won / (won + lost)
    return table


def rouge_agreement(votes: pd.DataFrame, rouge1: dict, seed: int = 0) -> Optional[dict]:
    """On test-dialogue battles with a decisive vote: the share where the model with the higher ROUGE-1 (against
    the references) won, with a 95% bootstrap interval. `rouge1[(dialogue_id, model)]`; ROUGE ties left out."""
    agree = []
    for v in votes[(votes["source"] == "test") & votes["choice"].isin(["a", "b"])].itertuples():
        ra, rb = rouge1.get((v.dialogue_id, v.model_a)), rouge1.get((v.dialogue_id, v.model_b))
        if ra is None or rb is None or ra == rb:
            continue
        agree.append(float((ra > rb) == (v.choice == "a")))
    if not agree:
        return None
    values = np.array(agree)
    means = values[np.random.default_rng(seed).integers(0, len(values), (1000, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"share": float(values.mean()), "ci_low": float(low), "ci_high": float(high), "n": len(values)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="the votes database (e.g. artifacts/<run>/votes.sqlite)")
    parser.add_argument("--csv", type=Path, help="write every vote with its battle to this CSV file")
    args = parser.parse_args(argv)
    if not args.db.exists():
        parser.exit(2, f"error: {args.db} does not exist. The app creates it at <run>/votes.sqlite (or --votes_db).\n")
    votes = VoteStore(args.db).votes_frame()
    if args.csv:
        votes.to_csv(args.csv, index=False)
        print(f"wrote {len(votes)} votes to {args.csv}")
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    if len(votes) < MIN_VOTES:
        print(f"{len(votes)} votes: not enough votes yet for ratings (at least {MIN_VOTES}).")
        return
    table = ratings_table(votes, models)
    print(f"Bradley-Terry strengths from {len(votes)} votes (log scale, 0 = average; 95% bootstrap CI):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
