"""The nights a matrix ran, in SQLite (docs/nightly.md, History and regressions): a `night` row
per results document, a `result` row per cell, and the regressions a night shows against the
nights before it on the same host."""
from __future__ import annotations

import sqlite3
import statistics
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Optional

from dumpbed.errors import DumpbedError

SCHEMA_VERSION = 1
# Each step takes the database from version i to i+1 (index i-1); version 1 is made from nothing.
MIGRATIONS: list[str] = []
SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE night (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,              -- results.json's started (RFC 3339)
    finished TEXT NOT NULL,
    commit_id TEXT,                  -- dumpbed's commit; null outside a checkout
    matrix TEXT NOT NULL,
    label TEXT
);
CREATE TABLE result (
    night INTEGER NOT NULL REFERENCES night(id) ON DELETE CASCADE,
    cell TEXT NOT NULL,
    host TEXT,                       -- null for an infrastructure error
    accel TEXT,
    outcome TEXT NOT NULL,           -- pass | fail | error
    verdict TEXT,
    dump_status TEXT,
    mib_s REAL,
    PRIMARY KEY (night, cell)
);
CREATE INDEX result_cell_host ON result (cell, host);
"""

# docs/nightly.md: a rate more than 20 % below the median of the last 7 passing rated runs on
# the host, judged from 3 such runs
SLOWER = 0.8
RATE_RUNS = 7
RATE_RUNS_NEEDED = 3


@contextmanager
def _open(db: Path, create: bool = False) -> Iterator[sqlite3.Connection]:
    """The history, migrated to this version (created when `create`: a reader never makes an
    empty file where a path was mistyped); committed when the block ends well."""
    db = Path(db)
    if not create and not db.exists():
        raise DumpbedError(f"history {db}: no such file")
    try:
        with closing(sqlite3.connect(db, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:
                _migrate(conn, db)
            with conn:
                yield conn
    except sqlite3.DatabaseError as exc:  # not a database, locked, read-only, a full disk
        raise DumpbedError(f"history {db}: {exc}") from exc


def _migrate(conn: sqlite3.Connection, db: Path) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        conn.executescript("BEGIN;" + SCHEMA + f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION}); COMMIT;")
        return
    if "schema_version" not in tables:
        raise DumpbedError(f"history {db}: not a dumpbed history (no schema_version table)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > SCHEMA_VERSION:
        raise DumpbedError(f"history {db}: version {version}, written by a newer dumpbed (this one reads up to "
                           f"{SCHEMA_VERSION})")
    if version < 1:
        raise DumpbedError(f"history {db}: no schema version recorded")
    for step in MIGRATIONS[version - 1:]:
        conn.executescript(step)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


def check_path(db: Path) -> None:
    """Before a matrix runs: DumpbedError unless db is a history this dumpbed can use, or can
    be created (its directory exists). Creates nothing."""
    db = Path(db)
    if db.exists():
        with _open(db):
            return
    if not db.parent.is_dir():
        raise DumpbedError(f"history {db}: no directory {db.parent}")


def record(db: Path, doc: dict, label: Optional[str] = None) -> int:
    """Keep doc's night; returns its id. Recording the same night again (same matrix, started
    and finished: a re-run merge job) replaces its rows instead of counting it twice."""
    with _open(db, create=True) as conn:
        row = conn.execute("SELECT id FROM night WHERE matrix = ? AND time = ? AND finished = ?",
                           (doc["matrix"], doc["started"], doc["finished"])).fetchone()
        if row:
            night = row["id"]
            conn.execute("DELETE FROM result WHERE night = ?", (night,))
            conn.execute("UPDATE night SET commit_id = ?, label = ? WHERE id = ?", (doc["commit"], label, night))
        else:
            night = conn.execute("INSERT INTO night (time, finished, commit_id, matrix, label) VALUES (?, ?, ?, ?, ?)",
                                 (doc["started"], doc["finished"], doc["commit"], doc["matrix"], label)).lastrowid
        conn.executemany(
            "INSERT INTO result (night, cell, host, accel, outcome, verdict, dump_status, mib_s) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(night, c["id"], c["host"], c["accel"], c["outcome"], c["verdict"], c["dump_status"], c["mib_s"])
             for c in doc["cells"]])
    return night


# Nights before a given one: by time, then by id (two nights of one start time: the later recorded)
_EARLIER = "(n.time < :time OR (n.time = :time AND n.id < :night))"


def _night(conn: sqlite3.Connection, night: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM night WHERE id = ?", (night,)).fetchone()
    if row is None:
        raise DumpbedError(f"no night {night} in the history")
    return row


def regressions(db: Path, night: int) -> list[dict]:
    """The night's regressions: {cell, host, kind ('newly-failing' | 'throughput'), detail,
    figures}, in the night's cell order (newly failing first for a cell with both)."""
    found = []
    with _open(db) as conn:
        this = _night(conn, night)
        args = {"time": this["time"], "night": night}
        rows = conn.execute("SELECT * FROM result WHERE night = ? AND host IS NOT NULL ORDER BY rowid",
                            (night,)).fetchall()
        for r in rows:
            key = dict(args, cell=r["cell"], host=r["host"])
            if r["outcome"] == "fail":
                # the last night it was judged on this host: an infrastructure error judged nothing
                last = conn.execute(
                    f"SELECT n.id, n.time, n.commit_id, r.outcome FROM result r JOIN night n ON n.id = r.night "
                    f"WHERE r.cell = :cell AND r.host = :host AND r.outcome != 'error' AND {_EARLIER} "
                    f"ORDER BY n.time DESC, n.id DESC LIMIT 1", key).fetchone()
                if last is not None and last["outcome"] == "pass":
                    found.append(_newly_failing(r, last))
            if r["mib_s"] is not None:
                rates = [x[0] for x in conn.execute(
                    f"SELECT r.mib_s FROM result r JOIN night n ON n.id = r.night "
                    f"WHERE r.cell = :cell AND r.host = :host AND r.outcome = 'pass' AND r.mib_s IS NOT NULL "
                    f"AND r.accel IS :accel AND {_EARLIER} ORDER BY n.time DESC, n.id DESC LIMIT {RATE_RUNS}",
                    dict(key, accel=r["accel"]))]
                slow = _slower(r, rates)
                if slow:
                    found.append(slow)
    return found


def _newly_failing(r: sqlite3.Row, last: sqlite3.Row) -> dict:
    commit = f", commit {last['commit_id'][:12]}" if last["commit_id"] else ""
    detail = (f"passed on {r['host']} on night {last['id']} ({last['time']}{commit}); now fails "
              f"(verdict {r['verdict']}, dump {r['dump_status']})")
    return {"cell": r["cell"], "host": r["host"], "kind": "newly-failing", "detail": detail,
            "figures": {"last_pass_night": last["id"], "last_pass_time": last["time"]}}


def _slower(r: sqlite3.Row, rates: list[float]) -> Optional[dict]:
    if len(rates) < RATE_RUNS_NEEDED:
        return None
    median = statistics.median(rates)
    if not r["mib_s"] < SLOWER * median:
        return None
    drop = 1 - r["mib_s"] / median
    detail = (f"{r['mib_s']:.1f} MiB/s on {r['host']} ({r['accel']}), {drop:.0%} below the median "
              f"{median:.1f} MiB/s of its last {len(rates)} passing runs")
    return {"cell": r["cell"], "host": r["host"], "kind": "throughput", "detail": detail,
            "figures": {"mib_s": r["mib_s"], "median_mib_s": median, "runs": len(rates), "drop": drop}}


def trend(db: Path, cell: str, host: str, limit: int = 14, until: Optional[int] = None) -> list[dict]:
    """The cell's last `limit` results on host, oldest first: {night, time, label, outcome, mib_s};
    with `until`, only that night and those before it."""
    with _open(db) as conn:
        where = "r.cell = :cell AND r.host = :host"
        args: dict = {"cell": cell, "host": host, "limit": limit}
        if until is not None:
            this = _night(conn, until)
            where += f" AND ({_EARLIER} OR n.id = :night)"
            args.update(time=this["time"], night=until)
        rows = conn.execute(
            f"SELECT n.id AS night, n.time, n.label, r.outcome, r.mib_s FROM result r JOIN night n ON n.id = r.night "
            f"WHERE {where} ORDER BY n.time DESC, n.id DESC LIMIT :limit", args).fetchall()
    return [dict(r) for r in reversed(rows)]


def latest_night(db: Path, matrix: Optional[str] = None, started: Optional[str] = None) -> Optional[int]:
    """The night recorded for (matrix, started) when given and there, else the latest one;
    None in an empty or missing history."""
    if not Path(db).exists():
        return None
    with _open(db) as conn:
        if matrix is not None and started is not None:
            row = conn.execute("SELECT id FROM night WHERE matrix = ? AND time = ? ORDER BY id DESC LIMIT 1",
                               (matrix, started)).fetchone()
            if row:
                return row["id"]
        row = conn.execute("SELECT id FROM night ORDER BY time DESC, id DESC LIMIT 1").fetchone()
    return row["id"] if row else None
