"""Profile store: measurements in one SQLite file (standard library), crash-safe and resumable.

Each model's measurement (its ``models`` row and all its ``ops`` rows) is written in one transaction,
so a run killed at any moment loses at most the model in progress; the WAL journal keeps the file
readable meanwhile. A (model file hash, scenario) pair is stored once: profiling again skips it.
Failures are stored too (status 'failed' + reason) so a model the runtime cannot run is not retried
on every resume unless asked.

Hostile files give one :class:`LatpredError` line, never a traceback, and lose nothing: every open
runs ``PRAGMA quick_check`` (about 35 ms on the 9 MB committed stores) and refuses a damaged file
or an SQLite database that is not a latpred store; SQLite errors of later reads and writes (a
full disk, a page damaged after the open) come out as one line naming the store. Read-only opens
use SQLite's ``mode=ro`` (``immutable=1`` where no side file can be made and none is pending, e.g.
a read-only folder), so a store someone cannot write can still be read. The commands that write
(`latpred profile`, `store import|drop|refeature|combine`) hold an exclusive lock on
``STORE.lock`` for their whole run (``ProfileStore(path, lock=True)`` or :func:`write_lock`): a
second one refuses at once instead of measuring the same models again; readers never take it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import sqlite3
import time
import urllib.parse
from typing import Any, Iterable, Iterator

import pandas as pd

from .devices import HostCpu
from .errors import LatpredError
from .features import ALL_FEATURES
from .fileio import atomic_path, os_error_message
from .scenario import Scenario

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,            -- model id: the file stem
    model_path TEXT,
    model_hash TEXT NOT NULL,       -- sha256 of the file
    scenario TEXT NOT NULL,
    status TEXT NOT NULL,           -- ok | failed
    reason TEXT,
    e2e_ms REAL, e2e_cv REAL, e2e_runs INTEGER,
    n_ops INTEGER,
    measured_at TEXT NOT NULL,      -- UTC ISO time
    machine TEXT,                   -- JSON: CPU model, cores, runtime versions, ...
    UNIQUE (model_hash, scenario)
);
CREATE TABLE IF NOT EXISTS ops (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    op_index INTEGER NOT NULL,      -- op (CPU) or kernel (GPU) position in execution order
    op_type TEXT,
    category TEXT,
    latency_ms REAL, latency_cv REAL, runs INTEGER,
    kernel_ops TEXT,                -- GPU kernels: the model op indices the kernel covers
    features TEXT,                  -- JSON {feature name: value}
    PRIMARY KEY (model_id, op_index)
);
CREATE INDEX IF NOT EXISTS models_scenario ON models(scenario);
"""
OP_COLUMNS = ("model", "model_hash", "scenario", "op_index", "op_type", "category", "latency_ms",
              "latency_cv", "runs", "e2e_ms", "e2e_cv", "kernel_ops")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- hostile files: one line per SQLite error ------------------------------------------------------

def _one_line(text: str, limit: int = 200) -> str:
    """SQLite's texts may hold newlines (quick_check) or a damaged value's bytes."""
    text = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in str(text))).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _disk_full(path: str) -> bool:
    try:
        fs = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < 256 * 1024   # less than a few WAL frames' worth


def _sqlite_message(path: str, exc: BaseException, writing: bool, kept: bool = True) -> str:
    """One line for an SQLite (or damaged-value) error on the store at ``path``; ``kept``: say
    that what the store held before is still there (writes are one transaction per model)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    text = _one_line(str(exc).replace("*** in database main ***", ""))
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text or "decode" in text.lower() \
            or isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return f"{path}: damaged profile store ({text}); restore it from a copy"
    if name == "SQLITE_NOTADB":
        return f"{path}: not a latpred profile store (not an SQLite database)"
    kept = "; what was stored before is kept" if writing and kept else ""
    # SQLite reports a full disk as SQLITE_FULL, or as an I/O error where it maps memory (-shm)
    if name == "SQLITE_FULL" or (name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN"))
                                 and _disk_full(path)):
        return f"{path}: cannot write (no space left on the device){kept}"
    if name.startswith("SQLITE_READONLY"):
        return f"{path}: cannot write (read-only file or folder){kept}"
    return f"{path}: cannot {'write' if writing else 'read'} the profile store ({text}){kept}"


def _guarded(writing: bool):
    """Store methods: SQLite errors (and damaged JSON values) become one LatpredError line."""
    def wrap(fn):
        @functools.wraps(fn)
        def method(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except sqlite3.ProgrammingError:   # misuse (a closed store) is a bug, not input
                raise
            except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
                raise LatpredError(_sqlite_message(self.path, exc, writing)) from None
            except pd.errors.DatabaseError as exc:    # pandas wraps sqlite's error
                cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
                raise LatpredError(_sqlite_message(self.path, cause, writing)) from None
        return method
    return wrap


_reads, _writes = _guarded(False), _guarded(True)


def _check_store(path: str, conn: sqlite3.Connection) -> None:
    """Refuse a damaged file and an SQLite database that is not a latpred store (before anything
    is written to it). A new or empty database passes."""
    problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        first = _one_line(problems[0].replace("*** in database main ***", ""), 120)
        raise LatpredError(f"{path}: damaged profile store (integrity check: {first}{more}); "
                           "restore it from a copy")
    tables = sorted(r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    if not tables:
        return
    version = None
    if {"meta", "models", "ops"} <= set(tables):
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else None
        except (sqlite3.OperationalError, TypeError, ValueError):   # someone else's meta table
            version = None
    if version is None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise LatpredError(f"{path}: not a latpred profile store (an SQLite database with "
                           f"tables {shown}); give a new file")
    if version > SCHEMA_VERSION:
        raise LatpredError(f"{path}: written by a newer latpred (store schema {version}, this "
                           f"one reads {SCHEMA_VERSION}); upgrade latpred")


def _connect_readonly(path: str) -> sqlite3.Connection:
    """Open for reading without writing anything that is not already there.

    ``mode=ro`` still makes the WAL side files (-shm, -wal) if they are missing, which a read-only
    folder or a full disk refuses; ``immutable=1`` reads without them but also skips locking and
    ignores a pending WAL, so it is used only when no -wal/-journal with content exists (no
    writer, nothing unmerged) and the folder cannot be written or mode=ro failed."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    pending = [s for s in ("-wal", "-journal")
               if os.path.exists(path + s) and os.path.getsize(path + s) > 0]
    folder_writable = os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)
    tries = [uri] if pending else ([uri, uri + "&immutable=1"] if folder_writable
                                   else [uri + "&immutable=1"])
    for k, attempt in enumerate(tries):
        conn = sqlite3.connect(attempt, uri=True, timeout=60)
        try:
            _check_store(path, conn)
            conn.execute("PRAGMA foreign_keys = ON")
            tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.OperationalError as exc:
            conn.close()
            name = getattr(exc, "sqlite_errorname", "") or ""
            if k + 1 < len(tries) and name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN",
                                                        "SQLITE_FULL", "SQLITE_READONLY")):
                continue
            if pending and not folder_writable:
                raise LatpredError(
                    f"{path}: cannot read: its journal {path + pending[0]} was never merged and "
                    "the folder is read-only; open the store once where it can be written"
                ) from None
            raise
        except BaseException:
            conn.close()
            raise
        if not tables:   # an empty file: an empty store, as a write-open would make it
            conn.close()
            conn = sqlite3.connect(":memory:")
            conn.executescript(_SCHEMA)
        return conn
    raise AssertionError("unreachable")


# -- the write lock --------------------------------------------------------------------------------

_HELD_LOCKS: dict[str, list] = {}   # lock file -> [fd, depth]; reentrant inside one process


def lock_path(store_path: str | os.PathLike) -> str:
    """The side file whose exclusive ``flock`` a store's writer holds."""
    return os.path.abspath(os.fspath(store_path)) + ".lock"


def _lock_holder(lock_file: str) -> str:
    with contextlib.suppress(OSError, ValueError):
        with open(lock_file) as fh:
            return f" (pid {int(fh.read(32).strip())})"
    return ""


def _acquire_lock(store_path: str) -> str:
    key = lock_path(store_path)
    held = _HELD_LOCKS.get(key)
    if held is not None:
        held[1] += 1
        return key
    while True:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LatpredError(os_error_message(store_path, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LatpredError(
                    f"{store_path}: another latpred process{_lock_holder(key)} is writing this "
                    "store; run this again when it has finished") from None
            raise LatpredError(f"{store_path}: cannot lock for writing ({exc.strerror})") from None
        # the holder before us unlinks the file when it is done: the lock must be on the file
        # that has the name now, or two writers could each hold one
        try:
            now, ours = os.stat(key), os.fstat(fd)
            if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    with contextlib.suppress(OSError):   # who holds it, for the next writer's message
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[key] = [fd, 1]
    return key


def _release_lock(key: str) -> None:
    held = _HELD_LOCKS[key]
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD_LOCKS[key]
    with contextlib.suppress(OSError):
        os.unlink(key)          # while still locked; see _acquire_lock
    os.close(held[0])


@contextlib.contextmanager
def write_lock(store_path: str | os.PathLike) -> Iterator[None]:
    """Hold the write lock of the store at ``store_path`` (refuse at once if another process
    does) for a run that opens it several times or replaces the file (combine, passes)."""
    key = _acquire_lock(os.fspath(store_path))
    try:
        yield
    finally:
        _release_lock(key)


class ProfileStore:
    """Measurements of models under scenarios. ``ProfileStore(path)`` creates the file if needed.
    ``lock=True`` (a writer's whole run): hold the store's write lock until :meth:`close`, or
    refuse at once when another process holds it."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False, *, lock: bool = False):
        self.path = os.fspath(path)
        self.conn = None
        self._lock: str | None = None
        if readonly and not os.path.isfile(self.path):
            raise LatpredError(f"{self.path}: no such profile store")
        if os.path.isdir(self.path):
            raise LatpredError(f"{self.path}: is a directory, not a profile store")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise LatpredError(f"{self.path}: folder {parent} does not exist")
        if not readonly and lock:
            self._lock = _acquire_lock(self.path)
        created = not readonly and not os.path.exists(self.path)
        try:
            if readonly:
                self.conn = _connect_readonly(self.path)
            else:
                self.conn = sqlite3.connect(self.path, timeout=60)
                _check_store(self.path, self.conn)
                self.conn.execute("PRAGMA foreign_keys = ON")
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = FULL")
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                      (str(SCHEMA_VERSION),))
        except BaseException as exc:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            if created:   # a new store whose schema could not be written: leave no empty file
                for leftover in (self.path, self.path + "-wal", self.path + "-shm",
                                 self.path + "-journal"):
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
            self._release()
            if isinstance(exc, sqlite3.DatabaseError) and \
                    not isinstance(exc, sqlite3.ProgrammingError):
                raise LatpredError(_sqlite_message(self.path, exc, not readonly,
                                                   kept=not created)) from None
            raise

    # -- writing ---------------------------------------------------------------------------------
    @_reads
    def has(self, model_hash: str, scenario: str, include_failed: bool = True) -> bool:
        sql = "SELECT status FROM models WHERE model_hash = ? AND scenario = ?"
        row = self.conn.execute(sql, (model_hash, scenario)).fetchone()
        return row is not None and (include_failed or row[0] == "ok")

    @_writes
    def add_measurement(self, model_path_or_id: str, model_hash: str, scenario: str,
                        e2e_ms: float | None, e2e_cv: float | None, op_rows: list[dict],
                        machine: dict | None = None, e2e_runs: int | None = None,
                        replace: bool = True) -> int:
        """Store one model's measurement atomically; returns its row id.

        ``op_rows``: dicts with ``op_index``, ``op_type``, ``category``, ``latency_ms`` and optional
        ``latency_cv``, ``runs``, ``kernel_ops`` (list or text) and ``features`` (dict) or feature
        names as keys. An earlier row for the same (hash, scenario), e.g. a failure, is replaced."""
        model = _model_id(model_path_or_id)
        path = model_path_or_id if os.path.sep in str(model_path_or_id) else None
        rows = []
        for r in op_rows:
            feats = r.get("features")
            if feats is None:
                feats = {k: r[k] for k in ALL_FEATURES if k in r and r[k] is not None}
            ko = r.get("kernel_ops")
            if isinstance(ko, (list, tuple)):
                ko = ",".join(str(i) for i in ko)
            rows.append((int(r["op_index"]), r.get("op_type"), r.get("category"),
                         _float(r.get("latency_ms")), _float(r.get("latency_cv")),
                         r.get("runs"), ko, json.dumps(_clean(feats))))
        with self.conn:
            if replace:
                self.conn.execute("DELETE FROM models WHERE model_hash = ? AND scenario = ?",
                                  (model_hash, scenario))
            cur = self.conn.execute(
                "INSERT INTO models (model, model_path, model_hash, scenario, status, reason, e2e_ms,"
                " e2e_cv, e2e_runs, n_ops, measured_at, machine) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (model, path, model_hash, scenario, "ok", None, _float(e2e_ms), _float(e2e_cv),
                 e2e_runs, len(rows), _now(), json.dumps(machine or {})))
            mid = cur.lastrowid
            self.conn.executemany(
                "INSERT INTO ops (model_id, op_index, op_type, category, latency_ms, latency_cv,"
                " runs, kernel_ops, features) VALUES (?,?,?,?,?,?,?,?,?)",
                [(mid, *r) for r in rows])
        return mid

    @_writes
    def refresh_features(self, model_hash: str, features: list[dict]) -> int:
        """Replace the stored features of one model's op rows (every scenario whose rows are ops,
        not GPU kernels) with ``features[op_index]``; latencies are kept. One transaction; returns
        the number of rows rewritten. For feature rules that changed after profiling."""
        ids = [r[0] for r in self.conn.execute(
            "SELECT id FROM models WHERE model_hash = ? AND status = 'ok'", (model_hash,))]
        updates = []
        for mid in ids:
            for op_index, kernel_ops in self.conn.execute(
                    "SELECT op_index, kernel_ops FROM ops WHERE model_id = ?", (mid,)).fetchall():
                if kernel_ops is None and 0 <= op_index < len(features):
                    updates.append((json.dumps(_clean(features[op_index])), mid, op_index))
        with self.conn:
            self.conn.executemany("UPDATE ops SET features = ? WHERE model_id = ? AND op_index = ?",
                                  updates)
        return len(updates)

    @_writes
    def add_failure(self, model_path_or_id: str, model_hash: str, scenario: str, reason: str,
                    machine: dict | None = None) -> None:
        model = _model_id(model_path_or_id)
        path = model_path_or_id if os.path.sep in str(model_path_or_id) else None
        with self.conn:
            self.conn.execute("DELETE FROM models WHERE model_hash = ? AND scenario = ?",
                              (model_hash, scenario))
            self.conn.execute(
                "INSERT INTO models (model, model_path, model_hash, scenario, status, reason,"
                " n_ops, measured_at, machine) VALUES (?,?,?,?,?,?,?,?,?)",
                (model, path, model_hash, scenario, "failed", str(reason)[:2000], 0, _now(),
                 json.dumps(machine or {})))

    @_writes
    def drop(self, scenario: str | None = None, models: Iterable[str] | None = None,
             min_e2e_cv: float | None = None) -> int:
        """Delete measurements so that profiling again re-measures them; returns how many.

        Selects by model name (file stem) and/or end-to-end CV >= ``min_e2e_cv`` (noisy timings),
        within ``scenario`` if given. Op rows go with their model (ON DELETE CASCADE)."""
        where, params = ["1 = 1"], []
        if scenario:
            where.append("scenario = ?")
            params.append(scenario)
        names = list(models) if models is not None else None
        if names is not None:
            if not names:
                return 0
            where.append(f"model IN ({','.join('?' * len(names))})")
            params.extend(names)
        if min_e2e_cv is not None:
            where.append("status = 'ok' AND e2e_cv >= ?")
            params.append(float(min_e2e_cv))
        with self.conn:
            cur = self.conn.execute(f"DELETE FROM models WHERE {' AND '.join(where)}", params)
        return cur.rowcount

    # -- reading ---------------------------------------------------------------------------------
    @_reads
    def scenarios(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT scenario FROM models WHERE status = 'ok' ORDER BY scenario")]

    @_reads
    def scenario_cpus(self, scenario: str) -> list[HostCpu]:
        """The distinct host CPUs the measured models of ``scenario`` record."""
        seen: dict[HostCpu, None] = {}
        for (machine,) in self.conn.execute(
                "SELECT DISTINCT machine FROM models WHERE scenario = ? AND status = 'ok'",
                (scenario,)):
            cpu = HostCpu.from_facts(json.loads(machine or "{}"))
            if cpu is not None:
                seen.setdefault(cpu, None)
        return list(seen)

    @_reads
    def scenario(self, scenario_id: str) -> Scenario:
        """The :class:`~latpred.scenario.Scenario` of a stored id, with the host CPU its rows
        were measured on (None when they do not say); rows of two known, different CPUs in one
        scenario are an error: they must not feed one predictor."""
        scenario = Scenario.parse(scenario_id)
        cpus = self.scenario_cpus(scenario.id) if scenario.is_host else []
        for other in cpus[1:]:
            if other.differs_from(cpus[0]):
                raise LatpredError(f"{self.path}: scenario {scenario.id} mixes measurements of "
                                   f"two CPUs ({cpus[0]}; {other}); split them into two stores")
        return scenario.with_cpu(cpus[0] if cpus else None)

    @_reads
    def check_cpu(self, scenario_id: str, cpu: HostCpu) -> None:
        """Refuse to add ``cpu``'s measurements to a scenario measured on another CPU."""
        for known in self.scenario_cpus(scenario_id):
            if known.differs_from(cpu):
                raise LatpredError(f"{self.path}: scenario {scenario_id} was measured on {known}, "
                                   f"this machine is {cpu}; profile into a new store")

    @_reads
    def check_reference(self, scenario_id: str, reference_hash: str | None) -> None:
        """Refuse to mix models timed beside different reference gauges (or none) in a scenario:
        a drift normalization needs one gauge for all of them."""
        facts = [json.loads(m or "{}") for (m,) in self.conn.execute(
            "SELECT machine FROM models WHERE scenario = ? AND status = 'ok'", (scenario_id,))]
        if any("drift_factor" in f for f in facts):
            raise LatpredError(f"{self.path}: holds drift-normalized values (latpred store "
                               "normalize); profile into the raw store")
        known = {f.get("reference_hash") for f in facts}
        if known and known != {reference_hash}:
            def name(h):
                return f"reference {h[:12]}" if h else "no reference"
            raise LatpredError(f"{self.path}: scenario {scenario_id} was measured with "
                               f"{', '.join(sorted(map(name, known)))}; this run has "
                               f"{name(reference_hash)}; profile into a new store")

    @_reads
    def models(self, scenario: str | None = None) -> pd.DataFrame:
        """One row per stored model (failures included) with its machine facts as columns."""
        sql = ("SELECT model, model_hash, scenario, e2e_ms, e2e_cv, e2e_runs, n_ops, status, reason,"
               " measured_at, model_path, machine FROM models")
        params: tuple = ()
        if scenario:
            sql += " WHERE scenario = ?"
            params = (scenario,)
        df = pd.read_sql_query(sql + " ORDER BY id", self.conn, params=params)
        machine = pd.json_normalize([json.loads(m or "{}") for m in df.pop("machine")])
        if len(machine.columns):
            machine.index = df.index
            df = pd.concat([df, machine.drop(columns=[c for c in machine if c in df])], axis=1)
        return df

    @_reads
    def failures(self) -> pd.DataFrame:
        df = self.models()
        return df[df["status"] == "failed"].reset_index(drop=True)

    @_reads
    def frame(self, scenario: str | None = None) -> pd.DataFrame:
        """One row per measured op: OP_COLUMNS plus one column per feature in ALL_FEATURES."""
        sql = ("SELECT m.model, m.model_hash, m.scenario, o.op_index, o.op_type, o.category,"
               " o.latency_ms, o.latency_cv, o.runs, m.e2e_ms, m.e2e_cv, o.kernel_ops, o.features"
               " FROM ops o JOIN models m ON m.id = o.model_id WHERE m.status = 'ok'")
        params: tuple = ()
        if scenario:
            sql += " AND m.scenario = ?"
            params = (scenario,)
        df = pd.read_sql_query(sql + " ORDER BY m.id, o.op_index", self.conn, params=params)
        feats = [json.loads(f or "{}") for f in df.pop("features")]
        fdf = pd.DataFrame.from_records(feats, columns=list(ALL_FEATURES), index=df.index)
        extra = sorted({k for f in feats for k in f} - set(ALL_FEATURES))
        if extra:  # features a later feature set added; keep them rather than drop data
            fdf = pd.concat([fdf, pd.DataFrame.from_records(feats, columns=extra, index=df.index)],
                            axis=1)
        return pd.concat([df, fdf.astype(float)], axis=1)

    @_reads
    def summary(self) -> pd.DataFrame:
        """Counts per scenario: models measured, ops, failures, median e2e latency and CV."""
        sql = ("SELECT scenario, SUM(status='ok') AS models, SUM(status='failed') AS failures,"
               " SUM(CASE WHEN status='ok' THEN n_ops ELSE 0 END) AS ops FROM models"
               " GROUP BY scenario ORDER BY scenario")
        df = pd.read_sql_query(sql, self.conn)
        ok = pd.read_sql_query("SELECT scenario, e2e_ms, e2e_cv FROM models WHERE status='ok'",
                               self.conn)
        med = ok.groupby("scenario")[["e2e_ms", "e2e_cv"]].median().add_prefix("median_")
        return df.merge(med, left_on="scenario", right_index=True, how="left")

    # -- export / import -------------------------------------------------------------------------
    @_reads
    def export(self, out: str | os.PathLike, scenario: str | None = None) -> int:
        """Write ``frame(scenario)`` to .csv or .parquet atomically; returns the row count."""
        out = os.fspath(out)
        kind = os.path.splitext(out)[1].lower()
        if kind not in (".csv", ".parquet"):
            raise LatpredError(f"{out}: export needs a .csv or .parquet file name")
        if scenario and scenario not in self.scenarios():
            raise LatpredError(f"scenario {scenario!r} not in {self.path} "
                               f"(has: {', '.join(self.scenarios()) or 'none'})")
        df = self.frame(scenario)
        with atomic_path(out, suffix=kind) as tmp:
            if kind == ".csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        return len(df)

    @_writes
    def import_csv(self, csv_path: str | os.PathLike, scenario: str,
                   machine: dict | None = None) -> int:
        """Import op rows measured elsewhere (one row per op/kernel with at least ``model``,
        ``op_index``, ``latency_ms``; optional model_hash, op_type, category, e2e_ms, e2e_cv,
        latency_cv, runs, kernel_ops and feature columns). Returns the number of models added."""
        try:
            df = pd.read_csv(csv_path)
        except Exception as exc:
            raise LatpredError(f"{csv_path}: cannot read CSV ({exc.__class__.__name__})") from None
        missing = {"model", "op_index", "latency_ms"} - set(df.columns)
        if missing:
            raise LatpredError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
        count = 0
        for model, g in df.groupby("model", sort=False):
            h = str(g["model_hash"].iloc[0]) if "model_hash" in g else f"name:{model}"
            first = g.iloc[0]
            rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                    for r in g.to_dict("records")]
            self.add_measurement(str(model), h, scenario,
                                 first.get("e2e_ms") if "e2e_ms" in g else None,
                                 first.get("e2e_cv") if "e2e_cv" in g else None, rows,
                                 machine={**(machine or {}), "imported_from": os.fspath(csv_path)})
            count += 1
        return count

    @_reads
    def _rows(self) -> list[tuple[dict, list[dict]]]:
        """Every models row in id order with its op rows (none for failures), JSON decoded here
        so that a damaged value is an error of this store (for combine)."""
        self.conn.row_factory = sqlite3.Row
        try:
            out = []
            for m in self.conn.execute("SELECT * FROM models ORDER BY id").fetchall():
                ops = [] if m["status"] != "ok" else [
                    {**o, "features": json.loads(o["features"] or "{}")}
                    for o in map(dict, self.conn.execute(
                        "SELECT * FROM ops WHERE model_id = ? ORDER BY op_index", (m["id"],)))]
                out.append(({**dict(m), "machine": json.loads(m["machine"] or "{}")}, ops))
            return out
        finally:
            self.conn.row_factory = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def combine_stores(inputs: list[str | os.PathLike], out: str | os.PathLike,
                   replace: bool = False) -> dict[str, int]:
    """Merge repeated measurement passes of the same models into one store at ``out``.

    Each input is a store made by the same `latpred profile` command at a different time (a
    *pass*). A model's time on a shared machine drifts between passes by more than within one
    pass (other tenants, cache state), so one pass is a noisy label; the median over passes is a
    steadier one. Per (model hash, scenario): ``e2e_ms`` and every op's ``latency_ms`` become the
    median over the passes that measured it ok, ``runs`` the sum, the CVs the median within-pass
    CV; the machine facts gain ``passes``, ``pass_e2e_ms`` and ``pass_measured_at`` so the
    between-pass spread stays visible. Op rows and features come from the first pass that has the
    model; a pass whose op list differs (other op types) is left out for that model. Failures
    are kept only when no pass measured the model. Written to a temporary file, then renamed
    over ``out``; an existing ``out`` is an error unless ``replace``. Returns counts: models,
    ops, and how many models had fewer passes than inputs."""
    out = os.fspath(out)
    if len(inputs) < 2:
        raise LatpredError("store combine: give at least two pass stores")
    if os.path.exists(out) and not replace:
        raise LatpredError(f"{out}: exists; combine writes a new store")
    for p in inputs:
        if os.path.abspath(os.fspath(p)) == os.path.abspath(out):
            raise LatpredError(f"{out}: is also an input")
    with write_lock(out):   # no one writes ``out`` while it is replaced
        return _combine(inputs, out)


def _combine(inputs: list[str | os.PathLike], out: str) -> dict[str, int]:
    import numpy as np
    passes = []
    try:
        for p in inputs:
            passes.append(ProfileStore(p, readonly=True))
        by_key: dict[tuple[str, str], list[tuple[dict, list[dict]]]] = {}
        failed: dict[tuple[str, str], dict] = {}
        order: list[tuple[str, str]] = []
        for st in passes:
            for m, ops in st._rows():
                key = (m["model_hash"], m["scenario"])
                if key not in by_key and key not in failed:
                    order.append(key)
                if m["status"] != "ok":
                    failed.setdefault(key, m)
                    continue
                by_key.setdefault(key, []).append((m, ops))
        counts = {"models": 0, "ops": 0, "fewer_passes": 0}
        # SQLite takes the helper's empty temporary file as an empty database
        with atomic_path(out, suffix=".sqlite") as tmp, _sqlite_sidecars_removed(tmp), \
                _errors_name(tmp, out):
            dst = ProfileStore(tmp)   # a fresh name no one else knows: ``out`` is locked
            for key in order:
                measured = by_key.get(key)
                if not measured:
                    f = failed[key]
                    dst.add_failure(f["model_path"] or f["model"], f["model_hash"], f["scenario"],
                                    f["reason"], f["machine"])
                    continue
                first, first_ops = measured[0]
                signature = [(o["op_index"], o["op_type"]) for o in first_ops]
                same = [(m, ops) for m, ops in measured
                        if [(o["op_index"], o["op_type"]) for o in ops] == signature]
                if len(same) < len(inputs):
                    counts["fewer_passes"] += 1
                # dtype=float turns a missing (None) value into NaN, which the median skips
                lat = np.array([[o["latency_ms"] for o in ops] for _m, ops in same], dtype=float)
                cvs = np.array([[o["latency_cv"] for o in ops] for _m, ops in same], dtype=float)
                rows = []
                for j, o in enumerate(first_ops):
                    rows.append({"op_index": o["op_index"], "op_type": o["op_type"],
                                 "category": o["category"],
                                 "latency_ms": _nanmedian(lat[:, j]),
                                 "latency_cv": _nanmedian(cvs[:, j]),
                                 "runs": sum(int(ops[j]["runs"] or 0) for _m, ops in same) or None,
                                 "kernel_ops": o["kernel_ops"],
                                 "features": o["features"]})
                e2e = [m["e2e_ms"] for m, _ops in same]
                facts = dict(first["machine"])
                facts.update(passes=len(same), pass_e2e_ms=e2e,
                             pass_measured_at=[m["measured_at"] for m, _ops in same])
                gauge = [m["machine"].get("reference_ms") for m, _ops in same]
                if any(g is not None for g in gauge):
                    facts.update(pass_reference_ms=gauge, reference_ms=_nanmedian(gauge))
                runs = [m["e2e_runs"] for m, _ops in same if m["e2e_runs"] is not None]
                dst.add_measurement(first["model_path"] or first["model"], key[0], key[1],
                                    _nanmedian(e2e), _nanmedian([m["e2e_cv"] for m, _o in same]),
                                    rows, facts, e2e_runs=sum(runs) if runs else None)
                counts["models"] += 1
                counts["ops"] += len(rows)
            dst.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            dst.conn.execute("PRAGMA journal_mode = DELETE")
            dst.close()
        return counts
    finally:
        for st in passes:
            st.close()


def normalize_store(src: str | os.PathLike, out: str | os.PathLike, replace: bool = False,
                    target_ms: float | None = None) -> dict[str, Any]:
    """Write ``out``: ``src`` with the machine's drift taken out by its reference gauge.

    Every model of a scenario was timed beside one fixed reference model (``latpred profile
    --reference``). A model measured while the whole machine ran ``s`` times slower than usual
    shows it in its gauge time too, so each model's e2e and op latencies are multiplied by
    ``factor = median gauge time of the scenario / the gauge time beside this model``: the
    latencies the model would have had at the machine's median speed. The values are derived,
    not measured: every row keeps ``drift_factor`` and its raw ``raw_e2e_ms`` in its facts, and
    ``latpred profile`` refuses to add raw rows to such a store. A scenario with any measured
    model without a gauge time is an error (nothing to normalize by). Failures are copied.
    ``target_ms`` replaces the scenario's median gauge time: passes of the same models
    normalized to one target can then be combined (``combine_stores``).
    Returns per scenario the gauge's median ms and the factors' 5th/95th percentiles."""
    import numpy as np
    src, out = os.fspath(src), os.fspath(out)
    if os.path.abspath(src) == os.path.abspath(out):
        raise LatpredError(f"{out}: is also the input")
    if os.path.exists(out) and not replace:
        raise LatpredError(f"{out}: exists; normalize writes a new store")
    with ProfileStore(src, readonly=True) as st:
        rows = st._rows()
    gauges: dict[str, list[float]] = {}
    for m, _ops in rows:
        if m["status"] != "ok":
            continue
        if "drift_factor" in m["machine"]:
            raise LatpredError(f"{src}: is already drift-normalized")
        g = _float(m["machine"].get("reference_ms"))
        if g is None or g <= 0:
            raise LatpredError(f"{src}: model {m['model']} ({m['scenario']}) has no reference "
                               "time; measure with latpred profile --reference MODEL")
        gauges.setdefault(m["scenario"], []).append(g)
    if not gauges:
        raise LatpredError(f"{src}: no measured model to normalize")
    if target_ms is not None and not (isinstance(target_ms, (int, float)) and
                                      0 < target_ms < float("inf")):
        raise LatpredError(f"the target gauge time must be a positive number of ms, got {target_ms}")
    median = {scen: float(target_ms or np.median(g)) for scen, g in gauges.items()}
    report: dict[str, Any] = {}
    with write_lock(out), atomic_path(out, suffix=".sqlite") as tmp, \
            _sqlite_sidecars_removed(tmp), _errors_name(tmp, out):
        dst = ProfileStore(tmp)
        for m, ops in rows:
            facts = dict(m["machine"])
            if m["status"] != "ok":
                dst.add_failure(m["model_path"] or m["model"], m["model_hash"], m["scenario"],
                                m["reason"], facts)
                continue
            factor = median[m["scenario"]] / float(facts["reference_ms"])
            facts.update(drift_factor=factor, raw_e2e_ms=m["e2e_ms"],
                         raw_measured_at=m["measured_at"],
                         drift_reference_median_ms=median[m["scenario"]])
            scaled = [{**o, "latency_ms": None if o["latency_ms"] is None
                       else o["latency_ms"] * factor} for o in ops]
            dst.add_measurement(m["model_path"] or m["model"], m["model_hash"], m["scenario"],
                                None if m["e2e_ms"] is None else m["e2e_ms"] * factor,
                                m["e2e_cv"], scaled, facts,
                                e2e_runs=m["e2e_runs"])
        dst.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dst.conn.execute("PRAGMA journal_mode = DELETE")
        dst.close()
    for scen, g in gauges.items():
        f = median[scen] / np.asarray(g)
        report[scen] = {"models": len(g), "reference_median_ms": median[scen],
                        "factor_p5": float(np.percentile(f, 5)),
                        "factor_p95": float(np.percentile(f, 95))}
    return report


@contextlib.contextmanager
def _errors_name(tmp: str, out: str) -> Iterator[None]:
    """Errors while writing the temporary file of ``out`` name ``out``, as one line."""
    try:
        yield
    except LatpredError as exc:
        raise LatpredError(str(exc).replace(tmp, out)) from None
    except sqlite3.ProgrammingError:
        raise
    except sqlite3.DatabaseError as exc:
        raise LatpredError(_sqlite_message(out, exc, True)) from None


@contextlib.contextmanager
def _sqlite_sidecars_removed(path: str) -> Iterator[None]:
    """Remove the WAL journal files of a store at ``path`` that a failed write leaves behind."""
    try:
        yield
    finally:
        for leftover in (path + "-wal", path + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _nanmedian(values) -> float | None:
    """Median of the present values (None and NaN skipped); None when there are none."""
    import numpy as np
    values = np.array(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None


def _model_id(model_path_or_id: str) -> str:
    base = os.path.basename(str(model_path_or_id))
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in (".tflite", ".onnx") else base


def _float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _clean(feats: dict) -> dict:
    return {k: _float(v) for k, v in (feats or {}).items() if _float(v) is not None}


def iter_model_files(paths: Iterable[str | os.PathLike], exts: tuple[str, ...]) -> list[str]:
    """Files named directly plus the model files (by extension) under named folders, sorted."""
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = []
            for root, _dirs, files in os.walk(p):
                found += [os.path.join(root, f) for f in files if f.lower().endswith(exts)]
            out += sorted(found)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise LatpredError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))
