"""Hostile profile stores (issue class "Profile store"): a damaged file, a read-only folder, a full
disk, two writers at once and someone else's SQLite database each give one `latpred: ...` line,
exit code 2 and no traceback, and lose nothing that was stored.

Real stores throughout: a copy of the smallest committed store, or one that `latpred profile`
makes from tiny converter-made models. Root ignores permission bits, so as root a folder is made
read-only by bind-mounting it read-only over itself (EROFS), otherwise by chmod. A full disk is a
real full tmpfs where mounting one is allowed (root); the `rlimit` variant runs the command with
RLIMIT_FSIZE = 0 (SIGXFSZ ignored, so writes fail with EFBIG), which works for anyone.

Every test launches the command line for real (``run_cli``: exit code, stderr of a fresh process);
its further invocations go through the same entry point in this process (``main_cli``), except
where the process itself matters (the rlimit, the writer that holds the lock)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ROOT, conv_stem, main_cli, run_cli, run_python, tiny_keras, write_tflite

COMMITTED = os.path.join(ROOT, "datasets", "host", "litert_cpu1_int8.sqlite")
PROFILE = ("--runs", "3", "--warmup", "1", "--quiet")


def _refused(res, *words, warnings_ok: bool = False) -> str:
    """Exit code 2, no traceback, and one error line holding ``words``; returns it.
    ``warnings_ok``: logged warnings before it (train on a tiny store) are not errors."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    if warnings_ok:
        lines = [ln for ln in lines if ln.startswith("latpred: ")
                 and not ln.startswith("latpred: WARNING")]
    assert len(lines) == 1 and lines[0].startswith("latpred: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _sha(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _rows(path) -> list[tuple]:
    """(model, status) of every stored model; the read-only open runs quick_check, and reads on
    a full disk too (plain sqlite3 cannot: it must make the WAL's -shm file)."""
    from latpred.store import ProfileStore
    with ProfileStore(path, readonly=True) as st:
        return [tuple(r) for r in st.models()[["model", "status"]].itertuples(index=False)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two different tiny real models, and a store with the first one profiled."""
    root = tmp_path_factory.mktemp("hostile")
    a = write_tflite(tiny_keras(lambda L, x: L.Dense(4)(L.GlobalAveragePooling2D()(
        conv_stem(L, x, 8))), (16, 16, 3)), root / "tiny_a.tflite")
    b = write_tflite(tiny_keras(lambda L, x: L.Dense(3)(L.GlobalAveragePooling2D()(
        conv_stem(L, x, 4))), (16, 16, 3)), root / "tiny_b.tflite")
    store = root / "a.sqlite"
    res = run_cli("profile", a, "--out", store, *PROFILE)
    assert res.returncode == 0, res.stderr
    return {"a": a, "b": b, "store": store, "root": root}


# --------------------------------------------------------------------------------------------------
# 8. pages after the header garbled

def test_damaged_store_is_refused_by_every_command_and_left_alone(tiny, tmp_path):
    bundle = tmp_path / "tiny.latpred"
    res = run_cli("train", tiny["store"], "--method", "lasso", "--out", bundle, "--quiet")
    assert res.returncode == 0, res.stderr
    damaged = tmp_path / "damaged.sqlite"
    shutil.copy(COMMITTED, damaged)
    data = bytearray(damaged.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert data[:16] == b"SQLite format 3\x00"
    for p in range(1, len(data) // page, 7):        # every 7th page after the header's
        data[p * page + 100:p * page + 300] = os.urandom(200)
    damaged.write_bytes(data)
    before = _sha(damaged)
    out_csv = tmp_path / "ops.csv"
    _refused(run_cli("evaluate", bundle, damaged), str(damaged), "damaged profile store")
    for args in (("store", "list", damaged), ("store", "export", damaged, out_csv),
                 ("train", damaged, "--method", "lasso", "--out", tmp_path / "b.latpred"),
                 ("profile", tiny["a"], "--out", damaged, *PROFILE),
                 ("store", "drop", damaged, "--models", "x")):
        _refused(main_cli(*args), str(damaged), "damaged profile store")
    assert _sha(damaged) == before                  # nothing written into it
    assert not out_csv.exists() and not (tmp_path / "b.latpred").exists()
    assert not os.path.exists(f"{damaged}.lock")

    # damage quick_check cannot see: a stored value's bytes, the records around it intact
    subtle = tmp_path / "subtle.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{COMMITTED}?mode=ro&immutable=1",
                                            uri=True)) as c:
        value = c.execute("SELECT features FROM ops ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    data = bytearray(open(COMMITTED, "rb").read())
    at = data.find(value.encode())
    data[at + 2] = 0xFF                             # not UTF-8 any more, same length
    subtle.write_bytes(data)
    assert _rows(subtle)                            # the integrity check passes
    with contextlib.closing(sqlite3.connect(f"file:{subtle}?mode=ro", uri=True)) as c:
        c.text_factory = bytes                      # the damage is in a live op row
        assert any(b"\xff" in f for (f,) in c.execute("SELECT features FROM ops"))
    for args in (("store", "export", subtle, out_csv),
                 ("train", subtle, "--method", "lasso", "--out", tmp_path / "c.latpred")):
        _refused(main_cli(*args), str(subtle), "damaged profile store")


# --------------------------------------------------------------------------------------------------
# 9. a valid store in a read-only folder

@contextlib.contextmanager
def _read_only(folder):
    folder = os.fspath(folder)
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode:
        pytest.fail("root, but bind mounts are not allowed here (root ignores chmod): "
                    "no read-only folder to test")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", folder],
                          capture_output=True).returncode:
            pytest.fail("root, but a read-only remount is not allowed here: "
                        "no read-only folder to test")
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def test_store_in_read_only_folder_reads_and_refuses_writes_in_one_line(tiny, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "int8.sqlite"
    shutil.copy(COMMITTED, store)
    assert store.read_bytes()[18:20] == b"\x02\x02"      # WAL mode: reading needs side files
    pending = folder / "pending.sqlite"                  # a WAL never merged into its store
    shutil.copy(tiny["store"], pending)
    code = ("import os, sys; from latpred.store import ProfileStore; "
            "st = ProfileStore(sys.argv[1]); st.conn.execute('PRAGMA wal_autocheckpoint = 0'); "
            "st.add_failure('late.tflite', 'h', 'host/litert-2.3.0/cpu1/fp32', 'r'); os._exit(0)")
    assert run_python("-c", code, pending).returncode == 0
    assert os.path.getsize(f"{pending}-wal") > 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{pending}.lock")                     # left by the killed writer
    out = tmp_path / "ops.csv"
    with _read_only(folder):
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")           # the folder really is read-only
        res = run_cli("store", "list", store)
        assert res.returncode == 0 and "host/litert-2.3.0/cpu1/int8" in res.stdout, res.stderr
        res = run_cli("store", "export", store, out)
        assert res.returncode == 0, res.stderr
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro&immutable=1",
                                                uri=True)) as c:
            n_ops = c.execute("SELECT COUNT(*) FROM ops o JOIN models m ON m.id = o.model_id "
                              "WHERE m.status = 'ok'").fetchone()[0]
        assert f"exported {n_ops} op rows" in res.stdout
        res = main_cli("store", "list", pending)         # the WAL's row is read, not skipped
        assert res.returncode == 0 and "late: r" in res.stdout, res.stderr
        _refused(main_cli("store", "export", store, folder / "ops.csv"), "cannot write")
        _refused(main_cli("profile", tiny["a"], "--out", store, *PROFILE),
                 str(store), "cannot write")
        _refused(main_cli("store", "drop", store, "--models", "x"), "cannot write")


# --------------------------------------------------------------------------------------------------
# 10. a full disk

# joblib's semaphore is a file in /dev/shm too: its warning is the limit's, not the store's
_LIMITED = ("import resource, runpy, signal, sys, warnings; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); sys.argv[0] = 'latpred'; "
            "warnings.filterwarnings('ignore', message='.*joblib will operate in serial mode'); "
            "runpy.run_module('latpred', run_name='__main__', alter_sys=True)")


@contextlib.contextmanager
def _full_disk(kind: str, folder):
    """A folder on a full disk and the way to run latpred there."""
    folder = os.fspath(folder)
    os.makedirs(folder)
    if kind == "rlimit":
        yield lambda fill: None, lambda *a: run_python("-c", _LIMITED, *a)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder],
                      capture_output=True).returncode:
        pytest.fail("mounting a tmpfs is not allowed here: no full disk to test "
                    "(the rlimit variant is a separate case)")

    def fill(_):
        with open(os.path.join(folder, "filler"), "ab", buffering=0) as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 4096)
    launches = []

    def run(*args):
        """The first command a real launch, the others in this process (the disk is as full)."""
        launches.append(args)
        return (run_cli if len(launches) == 1 else main_cli)(*args)
    try:
        yield fill, run
    finally:
        subprocess.run(["umount", folder], check=True)


def _drop_sidecars(store) -> None:
    """SQLite's -wal/-shm that closed read-only connections leave (none is open)."""
    for side in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{store}{side}")


@pytest.mark.parametrize("kind", ["tmpfs", "rlimit"])
def test_full_disk_is_one_line_and_loses_nothing(tiny, tmp_path, kind):
    folder = tmp_path / "disk"
    with _full_disk(kind, folder) as (fill, run):
        store = folder / "s.sqlite"
        shutil.copy(tiny["store"], store)
        before = _rows(store)
        assert before == [("tiny_a", "ok")]
        _drop_sidecars(store)

        # a reader keeps the WAL's side files, so the open passes and the measurement's write
        # fails
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as reader:
            reader.execute("SELECT COUNT(*) FROM models").fetchone()
            fill(folder)
            line = _refused(run("profile", tiny["b"], "--out", store, *PROFILE), str(store),
                            "cannot write", "what was stored before is kept")
        if kind == "tmpfs":
            assert "no space left on the device" in line
        _drop_sidecars(store)
        fill(folder)
        files = sorted(os.listdir(folder))
        # without them the open cannot make them
        _refused(run("profile", tiny["b"], "--out", store, *PROFILE), str(store), "cannot write")
        assert _rows(store) == before

        new = folder / "new.sqlite"                # no empty file left behind
        _refused(run("profile", tiny["a"], "--out", new, *PROFILE), str(new), "cannot write")
        assert not any(f.startswith("new.sqlite") for f in os.listdir(folder))

        # reads still work; what they write is refused in one line and leaves no temporary file
        _refused(run("store", "export", store, folder / "ops.csv"), "ops.csv", "cannot write")
        _refused(run("train", store, "--method", "lasso", "--out", folder / "t.latpred",
                     "--quiet"), "t.latpred", "cannot write", warnings_ok=True)
        _refused(run("nas", "sample", "--count", "1", "--seed", "1", "--specs-only",
                     "--out", folder / "nas"), "cannot write")
        sidecars = ("s.sqlite-wal", "s.sqlite-shm", "nas")   # SQLite's own; an empty folder
        assert [f for f in sorted(os.listdir(folder)) if f not in sidecars] == \
            [f for f in files if f not in sidecars]
        assert _rows(store) == before


# --------------------------------------------------------------------------------------------------
# 11. two writers at once

def _lock_held(lock_file) -> bool:
    """Whether some process holds a flock on ``lock_file``, read from /proc/locks (taking it
    here to find out would make the writer under test refuse)."""
    try:
        ino = os.stat(lock_file).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks") as fh:
        return any("FLOCK" in ln and ln.split()[5].endswith(f":{ino}") for ln in fh)


def test_second_writer_refuses_at_once_while_the_first_measures(tiny, tmp_path):
    store = tmp_path / "busy.sqlite"
    env = {**os.environ, "PYTHONPATH": ROOT}
    err_path = tmp_path / "first.err"
    err = open(err_path, "w")
    first = subprocess.Popen([sys.executable, "-m", "latpred", "profile", tiny["a"], "--out",
                              store, "--runs", "3", "--warmup", "1"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=err, text=True)
    (tmp_path / "x.csv").write_text("model,op_index,latency_ms\nm,0,1.0\n")
    try:
        deadline = time.monotonic() + 300
        # its progress bar starts once the store is open, locked and in WAL mode
        while not (_lock_held(f"{store}.lock") and "profile host" in err_path.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "first run ended"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)               # holds the lock while we try
        _refused(run_cli("profile", tiny["a"], "--out", store, *PROFILE), str(store),
                 "another latpred process", f"pid {first.pid}")
        for args in (("store", "drop", store, "--models", "tiny_a"),
                     ("store", "import", store, tmp_path / "x.csv", "--scenario",
                      "pixel4/tflite-2.9/gpu/fp16")):
            _refused(main_cli(*args), str(store), "another latpred process", f"pid {first.pid}")
        reader = main_cli("store", "list", store)       # readers never need the lock
        assert reader.returncode == 0, reader.stderr
    finally:
        first.send_signal(signal.SIGCONT)
        out, _ = first.communicate(timeout=300)
        err.close()
    assert first.returncode == 0 and "1 measured" in out, out
    assert _rows(store) == [("tiny_a", "ok")]           # measured once, nothing dropped
    assert not os.path.exists(f"{store}.lock")
    again = main_cli("profile", tiny["a"], "--out", store, *PROFILE)
    assert again.returncode == 0 and "0 measured, 1 already stored" in again.stdout, again.stderr


# --------------------------------------------------------------------------------------------------
# 12. --out naming someone else's SQLite database

def test_someone_elses_database_is_refused_and_unchanged(tiny, tmp_path):
    other = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(other)) as c:
        c.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO customers (name) VALUES ('Ada')")
        c.commit()
    before = _sha(other)
    (tmp_path / "x.csv").write_text("model,op_index,latency_ms\nm,0,1.0\n")
    _refused(run_cli("store", "import", other, tmp_path / "x.csv", "--scenario",
                     "pixel4/tflite-2.9/gpu/fp16"), str(other), "not a latpred profile store",
             "customers")
    for args in (("profile", tiny["a"], "--out", other, *PROFILE),
                 ("store", "list", other)):
        _refused(main_cli(*args), str(other), "not a latpred profile store", "customers")
    assert _sha(other) == before and not os.path.exists(f"{other}-wal")

    newer = tmp_path / "newer.sqlite"               # a store of a later schema
    shutil.copy(tiny["store"], newer)
    with contextlib.closing(sqlite3.connect(newer)) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        c.commit()
    _refused(main_cli("store", "list", newer), str(newer), "newer latpred")

    empty = tmp_path / "empty.sqlite"               # an empty file is a new store
    empty.write_bytes(b"")
    listing = main_cli("store", "list", empty)
    assert listing.returncode == 0 and "empty" in listing.stdout, listing.stderr
    res = main_cli("profile", tiny["a"], "--out", empty, *PROFILE)
    assert res.returncode == 0 and "1 measured" in res.stdout, res.stderr
    assert _rows(empty) == [("tiny_a", "ok")]


def test_lock_file_is_only_held_by_writers(tiny, tmp_path):
    """In one process: a locking open holds STORE.lock (flock), a read-only open does not."""
    from latpred.store import ProfileStore, lock_path
    store = tmp_path / "s.sqlite"
    shutil.copy(tiny["store"], store)
    with ProfileStore(store, readonly=True), ProfileStore(store):
        assert not os.path.exists(lock_path(store))
    with ProfileStore(store, lock=True):
        fd = os.open(lock_path(store), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not os.path.exists(lock_path(store))
