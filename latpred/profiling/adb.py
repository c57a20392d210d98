"""Android backend: drives a phone over ``adb`` with the TFLite benchmark tool the user supplies.

Per model: push it, run ``taskset MASK benchmark_model --graph=... --num_threads=N
--enable_op_profiling=true`` (CPU; the mask and N come from the core configuration in the device
catalog) or ``--use_gpu=true`` (GPU, end-to-end only: the tool cannot time GPU kernels, paper §4.3.1),
and parse the tool's text output: the op-profiling "Run Order" table and the timing summary.

CPU op profiling runs with ``--use_xnnpack=false`` by default: then every profiled row is one
TFLite op (the paper's setting, TFLite builtin kernels with Ruy); with XNNPACK the rows are delegate
kernels that do not map one-to-one onto the model's ops.

The tool reports the mean (``avg``) and ``std`` of its runs, not the median: ``e2e_ms`` from this
backend is that mean, and op latencies are its per-op averages (no per-op CV: NaN).
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..errors import LatpredError
from ..devices import CoreConfig, Device
from .litert import Timing

REMOTE_DIR = "/data/local/tmp/latpred"
_NUM = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?"
_KV = re.compile(r"(\w+)=(-?[\d.]+(?:e[-+]?\d+)?)")


@dataclass
class ProfiledOp:
    position: int              # row position in the Run Order table
    node_index: int | None     # ":N" suffix of the name (newer tools), else None
    type: str
    first_ms: float
    avg_ms: float
    times_called: float | None
    name: str


@dataclass
class BenchmarkOutput:
    e2e_avg_ms: float | None
    e2e_std_ms: float | None
    e2e_count: int | None
    ops: list[ProfiledOp] = field(default_factory=list)

    @property
    def op_index_known(self) -> bool:
        return bool(self.ops) and all(o.node_index is not None for o in self.ops)


# --------------------------------------------------------------------------------------------------
# Parsing (format of tensorflow/lite/profiling/profile_summary_formatter.cc and the benchmark tool's
# log lines; see tests/fixtures/android/README.md for the recorded outputs the parser is tested on)

def _strip_log_prefix(line: str) -> str:
    return re.sub(r"^(?:INFO|WARNING|ERROR):\s?", "", line.rstrip("\r\n"))


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    lines = [_strip_log_prefix(line) for line in text.splitlines()]
    ops = _parse_run_order(lines)
    avg = std = None
    count = None
    line = ""
    try:   # a timing line with a missing or malformed number is an error naming the line
        for line in lines:   # the last "count=... avg=... std=..." line is the timed run
            s = line.strip()
            if s.startswith("count=") and "avg=" in s:
                kv = dict(_KV.findall(s))
                avg, std, count = float(kv["avg"]) / 1000.0, \
                    float(kv.get("std", "nan")) / 1000.0, int(float(kv["count"]))
        if count is None:   # old tools: only the profiler's summary of the same timed runs
            for line in lines:
                if line.strip().startswith("Timings (microseconds):") and "std=" in line:
                    kv = dict(_KV.findall(line))
                    std, count = float(kv["std"]) / 1000.0, int(float(kv["count"]))
                    avg = float(kv["avg"]) / 1000.0 if avg is None else avg
        for line in lines:   # the tool's own end-to-end figure wins over the profiler's
            m = re.search(r"Inference \(avg\):\s*(" + _NUM + ")", line) or \
                re.search(r"inference timings in us:.*Inference:\s*(" + _NUM + ")", line, re.I)
            if m:
                avg = float(m.group(1)) / 1000.0
    except (KeyError, ValueError, OverflowError):
        raise LatpredError("benchmark output: cannot parse timing line: "
                           + line.strip()[:200]) from None
    return BenchmarkOutput(e2e_avg_ms=avg, e2e_std_ms=std, e2e_count=count, ops=ops)


def _parse_run_order(lines: list[str]) -> list[ProfiledOp]:
    start = None
    regular = [i for i, l in enumerate(lines) if "Operator-wise Profiling Info for Regular" in l]
    init_marks = [i for i, l in enumerate(lines) if "Profiling Info for Benchmark Initialization" in l]
    for i, line in enumerate(lines):
        if "Run Order" not in line or "=====" not in line:
            continue
        if regular and i < regular[0]:
            continue
        if not regular and init_marks and i > init_marks[0] and not _after_other_table(lines, init_marks[0], i):
            continue
        start = i
        break
    if start is None:
        return []
    header = lines[start + 1]
    cols = re.findall(r"\[([^\]]+)\]", header)
    if not cols or cols[0].lower() != "node type" or cols[-1].lower() != "name" \
            or "avg ms" not in [c.lower() for c in cols]:
        raise LatpredError("benchmark output: unexpected Run Order header: " + header.strip())
    n_nums = len(cols) - 2
    lower = [c.lower() for c in cols[1:-1]]
    row_re = re.compile(r"^\s*(?P<type>\S.*?)\s+(?P<nums>(?:" + _NUM + r"\s+){" + str(n_nums) +
                        r"})(?P<name>\S.*)$")
    ops = []
    for line in lines[start + 2:]:
        if not line.strip() or "=====" in line:
            break
        m = row_re.match(line)
        if not m:
            raise LatpredError("benchmark output: cannot parse op profiling row: " + line.strip())
        nums = [float(x.rstrip("%")) for x in m["nums"].split()]
        values = dict(zip(lower, nums))
        name, index = _split_name(m["name"].strip())
        ops.append(ProfiledOp(position=len(ops), node_index=index, type=m["type"].strip(),
                              first_ms=values.get("first", float("nan")),
                              avg_ms=values["avg ms"], times_called=values.get("times called"),
                              name=name))
    return ops


def _after_other_table(lines: list[str], init_at: int, i: int) -> bool:
    """Old outputs have no 'Regular' marker; a Run Order after the init block's end is regular."""
    return any("nodes observed" in l for l in lines[init_at:i])


def _split_name(text: str) -> tuple[str, int | None]:
    m = re.match(r"^\[(?P<name>.*)\](?::(?P<idx>\d+))?$", text)
    if m:
        return m["name"], int(m["idx"]) if m["idx"] else None
    m = re.match(r"^(?P<name>.*):(?P<idx>\d+)$", text)
    if m:
        return m["name"], int(m["idx"])
    return text, None


# --------------------------------------------------------------------------------------------------
# Driving the phone

def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (its own session: see ``_run``) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:   # a child left the group and holds the pipes
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()


class AdbBackend:
    """One connected phone. ``connect()`` checks adb and the device and pushes the tool."""

    def __init__(self, device: Device, benchmark_binary: str | os.PathLike, adb: str = "adb",
                 serial: str | None = None, remote_dir: str = REMOTE_DIR, use_xnnpack: bool = False,
                 timeout_s: float = 600.0):
        if device.os != "android":
            raise LatpredError(f"{device.name} is not an Android device: the adb backend cannot "
                               "drive it")
        self.device = device
        self.binary = os.fspath(benchmark_binary) if benchmark_binary else ""
        self.adb = adb
        self.serial = serial
        self.remote_dir = remote_dir
        self.use_xnnpack = use_xnnpack
        if not (timeout_s > 0 and timeout_s != float("inf")):
            raise LatpredError(f"--timeout must be a positive number of seconds, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self._connected = False

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, cmd: list[str], what: str) -> subprocess.CompletedProcess:
        """Run one adb call under ``timeout_s``; on timeout its whole process group is killed
        (children of a wrapper script would otherwise keep running and hold the pipes open)."""
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace",
                                    start_new_session=True)
        except FileNotFoundError:
            raise LatpredError(f"adb not found ({self.adb}): install Android platform-tools or "
                               "pass --adb PATH") from None
        except PermissionError:
            raise LatpredError(f"adb {self.adb} is not executable (permission denied): "
                               "chmod +x it or pass --adb PATH") from None
        except OSError as exc:   # e.g. ENOEXEC: not a program
            raise LatpredError(f"adb {self.adb} cannot run ({exc.strerror or exc})") from None
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise LatpredError(f"{what} timed out after {self.timeout_s:g} s (--timeout); "
                               "killed it") from None
        except BaseException:   # Ctrl-C: leave nothing running
            _kill_group(proc)
            raise
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def _adb(self, *args: str, check: bool = True) -> str:
        cmd = [self.adb, *(("-s", self.serial) if self.serial else ()), *args]
        res = self._run(cmd, f"adb {' '.join(args[:2])}")
        if check and res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise LatpredError(f"adb {' '.join(args[:2])} failed: {msg[-1] if msg else res.returncode}")
        return res.stdout

    def connect(self) -> None:
        if self._connected:
            return
        if not self.binary or not os.path.isfile(self.binary):
            raise LatpredError("android profiling needs --benchmark-binary PATH (the TFLite "
                               f"benchmark_model built for the phone); got {self.binary or 'none'}")
        if shutil.which(self.adb) is None and not os.path.isfile(self.adb):
            raise LatpredError(f"adb not found ({self.adb}): install Android platform-tools or "
                               "pass --adb PATH")
        serials = [parts[0] for line in self._run_devices().splitlines()[1:]
                   if len(parts := line.split()) >= 2 and parts[1] == "device"]
        if not serials:
            raise LatpredError("no Android device connected (adb devices lists none ready)")
        if self.serial is None:
            if len(serials) > 1:
                raise LatpredError(f"{len(serials)} devices connected ({', '.join(serials)}): "
                                   "pick one with --serial")
            self.serial = serials[0]
        elif self.serial not in serials:
            raise LatpredError(f"device {self.serial} not connected (have {', '.join(serials)})")
        self._adb("shell", f"mkdir -p {shlex.quote(self.remote_dir)}")
        self._adb("push", self.binary, f"{self.remote_dir}/benchmark_model")
        self._adb("shell", f"chmod +x {shlex.quote(self.remote_dir)}/benchmark_model")
        self._connected = True

    def _run_devices(self) -> str:
        res = self._run([self.adb, "devices"], "adb devices")
        if res.returncode != 0:
            raise LatpredError(f"adb devices failed: {res.stderr.strip() or res.returncode}")
        return res.stdout

    def runtime_version(self) -> str:
        """The user's tool has no version flag: identify it by a short hash of the binary."""
        with open(self.binary, "rb") as fh:
            return "bm." + hashlib.sha256(fh.read()).hexdigest()[:8]

    def command(self, remote_model: str, config: CoreConfig | None, runs: int, warmup: int) -> str:
        """Shell command run on the phone; ``config`` None means the GPU."""
        tool = f"{self.remote_dir}/benchmark_model"
        flags = [f"--graph={shlex.quote(remote_model)}", f"--num_runs={runs}",
                 f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0"]
        if config is None:
            return " ".join([tool, *flags, "--use_gpu=true"])
        flags += [f"--num_threads={config.threads}", "--enable_op_profiling=true",
                  f"--use_xnnpack={'true' if self.use_xnnpack else 'false'}"]
        prefix = f"taskset {config.cpu_mask} " if config.cpu_ids else ""
        return prefix + " ".join([tool, *flags])

    def measure(self, model_path: str, config: CoreConfig | None, runs: int,
                warmup: int) -> dict[str, Any]:
        self.connect()
        remote = f"{self.remote_dir}/model.tflite"
        self._adb("push", model_path, remote)
        out = self._adb("shell", self.command(remote, config, runs, warmup), check=False)
        parsed = parse_benchmark_output(out)
        if parsed.e2e_avg_ms is None:
            tail = [l for l in out.strip().splitlines() if l.strip()][-1:] or ["no output"]
            raise LatpredError(f"benchmark_model gave no timing: {tail[0][:200]}")
        # end to end > 0, ops >= 0, all finite (1e999 parses as inf)
        bad = [v for v in (parsed.e2e_avg_ms, *(o.avg_ms for o in parsed.ops))
               if not (0 <= v < float("inf"))]
        if bad or parsed.e2e_avg_ms <= 0:
            raise LatpredError(f"benchmark_model gave an impossible latency "
                               f"({bad[0] if bad else parsed.e2e_avg_ms} ms)")
        ops = [{"op_index": o.node_index if o.node_index is not None else o.position,
                "op_type": o.type, "output_name": None, "latency_ms": o.avg_ms,
                "latency_cv": None, "runs": parsed.e2e_count} for o in parsed.ops]
        cv = (parsed.e2e_std_ms / parsed.e2e_avg_ms) if parsed.e2e_std_ms is not None \
            and parsed.e2e_avg_ms else float("nan")
        return {"e2e": Timing(median_ms=parsed.e2e_avg_ms, cv=cv, runs=parsed.e2e_count or runs),
                "ops": ops if config is not None else [], "runs": parsed.e2e_count or runs,
                "runtime": "tflite", "runtime_version": self.runtime_version()}
