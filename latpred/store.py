"""Profile store: measurements in one SQLite file (standard library), crash-safe and resumable.

Each model's measurement (its ``models`` row and all its ``ops`` rows) is written in one transaction,
so a run killed at any moment loses at most the model in progress; the WAL journal keeps the file
readable meanwhile. A (model file hash, scenario) pair is stored once: profiling again skips it.
Failures are stored too (status 'failed' + reason) so a model the runtime cannot run is not retried
on every resume unless asked.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Any, Iterable, Iterator

import pandas as pd

from .devices import HostCpu
from .errors import LatpredError
from .features import ALL_FEATURES
from .fileio import atomic_path
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


class ProfileStore:
    """Measurements of models under scenarios. ``ProfileStore(path)`` creates the file if needed."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = os.fspath(path)
        if readonly and not os.path.isfile(self.path):
            raise LatpredError(f"{self.path}: no such profile store")
        if os.path.isdir(self.path):
            raise LatpredError(f"{self.path}: is a directory, not a profile store")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise LatpredError(f"{self.path}: folder {parent} does not exist")
        try:
            self.conn = sqlite3.connect(self.path, timeout=60)
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = FULL")
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                      (str(SCHEMA_VERSION),))
            self.conn.execute("SELECT 1 FROM models LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise LatpredError(f"{self.path}: not a latpred profile store ({exc})") from None

    # -- writing ---------------------------------------------------------------------------------
    def has(self, model_hash: str, scenario: str, include_failed: bool = True) -> bool:
        sql = "SELECT status FROM models WHERE model_hash = ? AND scenario = ?"
        row = self.conn.execute(sql, (model_hash, scenario)).fetchone()
        return row is not None and (include_failed or row[0] == "ok")

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
    def scenarios(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT scenario FROM models WHERE status = 'ok' ORDER BY scenario")]

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

    def check_cpu(self, scenario_id: str, cpu: HostCpu) -> None:
        """Refuse to add ``cpu``'s measurements to a scenario measured on another CPU."""
        for known in self.scenario_cpus(scenario_id):
            if known.differs_from(cpu):
                raise LatpredError(f"{self.path}: scenario {scenario_id} was measured on {known}, "
                                   f"this machine is {cpu}; profile into a new store")

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

    def failures(self) -> pd.DataFrame:
        df = self.models()
        return df[df["status"] == "failed"].reset_index(drop=True)

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

    def close(self) -> None:
        self.conn.close()

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
    import numpy as np
    out = os.fspath(out)
    if len(inputs) < 2:
        raise LatpredError("store combine: give at least two pass stores")
    if os.path.exists(out) and not replace:
        raise LatpredError(f"{out}: exists; combine writes a new store")
    for p in inputs:
        if os.path.abspath(os.fspath(p)) == os.path.abspath(out):
            raise LatpredError(f"{out}: is also an input")
    passes = [ProfileStore(p, readonly=True) for p in inputs]
    try:
        by_key: dict[tuple[str, str], list[tuple[sqlite3.Row, list]]] = {}
        failed: dict[tuple[str, str], tuple] = {}
        order: list[tuple[str, str]] = []
        for st in passes:
            st.conn.row_factory = sqlite3.Row
            for m in st.conn.execute("SELECT * FROM models ORDER BY id"):
                key = (m["model_hash"], m["scenario"])
                if key not in by_key and key not in failed:
                    order.append(key)
                if m["status"] != "ok":
                    failed.setdefault(key, m)
                    continue
                ops = st.conn.execute("SELECT * FROM ops WHERE model_id = ? ORDER BY op_index",
                                      (m["id"],)).fetchall()
                by_key.setdefault(key, []).append((m, ops))
        counts = {"models": 0, "ops": 0, "fewer_passes": 0}
        # SQLite takes the helper's empty temporary file as an empty database
        with atomic_path(out, suffix=".sqlite") as tmp, _sqlite_sidecars_removed(tmp):
            dst = ProfileStore(tmp)
            for key in order:
                measured = by_key.get(key)
                if not measured:
                    f = failed[key]
                    dst.add_failure(f["model_path"] or f["model"], f["model_hash"], f["scenario"],
                                    f["reason"], json.loads(f["machine"] or "{}"))
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
                                 "features": json.loads(o["features"] or "{}")})
                e2e = [m["e2e_ms"] for m, _ops in same]
                facts = json.loads(first["machine"] or "{}")
                facts.update(passes=len(same), pass_e2e_ms=e2e,
                             pass_measured_at=[m["measured_at"] for m, _ops in same])
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
