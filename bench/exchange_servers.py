"""The servers bench/exchange.py loads, each started as it is normally deployed and stopped at
the end of its phase: OnceOnly (`uvicorn onceonly.app:create_app --factory --workers 2`),
Datasette (`datasette serve -i FILE`, one process: Datasette has no workers option) from a
virtual environment of its own built from bench/requirements.txt, and the bare Starlette app of
bench/exchange_starlette.py (uvicorn, 2 workers). No access logs anywhere, so none of them
spends time writing one line per request."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common import OUT, ROOT

BENCH = ROOT / "bench"
REQUIREMENTS = BENCH / "requirements.txt"
WORKERS = 2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A server process in a session (process group) of its own, so stopping it stops its
    workers too; its output goes to a log file that is shown when it fails to start."""

    def __init__(self, name: str, cmd: Sequence[str], env: dict[str, str], port: int, ready_path: str,
                 logfile: Path, cwd: Path = ROOT) -> None:
        self.name, self.port, self.ready_path, self.logfile = name, port, ready_path, logfile
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = logfile.open("wb")
        self.proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                status, _ = http_get(self.base_url + self.ready_path, timeout=2)
                if status == 200:
                    return time.perf_counter() - started
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes (its process group):
        divided by the requests of a run, a cost per request that another tenant of the machine
        disturbs far less than it does throughput."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process has gone
            if int(fields[2]) == self.proc.pid:  # pgrp; fields[11] and [12] are utime and stime
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.logfile.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group: the server and its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def running(server: Server, timeout: float = 120) -> Iterator[Server]:
    try:
        seconds = server.wait_ready(timeout)
        log(f"  {server.name} up on port {server.port} in {seconds:.1f} s")
        yield server
    finally:
        server.stop()


def _uvicorn(app: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, *extra, "--workers", str(WORKERS), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ONCEONLY_", "BENCH_"))
            or k.startswith("ONCEONLY_TEST_")}


def onceonly_server(home: Path, url: str, work: Path) -> Server:
    env = _base_env() | {"ONCEONLY_HOME": str(home)} | ({"ONCEONLY_DATABASE_URL": url} if url else {})
    port = free_port()
    return Server("onceonly", _uvicorn("onceonly.app:create_app", port, "--factory"), env, port, "/healthz",
                  work / f"onceonly-{port}.log")


def starlette_server(dsn: str, table: str, key: str, columns: Sequence[str], work: Path) -> Server:
    env = _base_env() | {"BENCH_DSN": dsn, "BENCH_TABLE": table, "BENCH_KEY": key, "BENCH_COLUMNS": ",".join(columns)}
    port = free_port()
    return Server("starlette", _uvicorn("exchange_starlette:app", port, "--app-dir", str(BENCH)), env, port,
                  "/healthz", work / f"starlette-{port}.log")


def floor_server(dsn: str, table: str, key: str, columns: Sequence[str], floor: dict[str, str], work: Path) -> Server:
    """The floor of bench/exchange_floor.py, its tables made first (in a process of its own:
    the module reads its configuration from the environment)."""
    env = _base_env() | {"BENCH_DSN": dsn, "BENCH_TABLE": table, "BENCH_KEY": key, "BENCH_COLUMNS": ",".join(columns),
                         **{f"FLOOR_{name.upper()}": value for name, value in floor.items()}}
    subprocess.run([sys.executable, str(BENCH / "exchange_floor.py"), "prepare"], env=env, cwd=BENCH, check=True)
    port = free_port()
    return Server("floor", _uvicorn("exchange_floor:app", port, "--app-dir", str(BENCH)), env, port,
                  "/healthz", work / f"floor-{port}.log")


# --- Datasette -----------------------------------------------------------------------------------

DATASETTE_SETTINGS = {  # Datasette's defaults, spelled out; facet suggestions are for table pages only
    "sql_time_limit_ms": "1000",
    "num_sql_threads": "3",
    "suggest_facets": "off",
}


def datasette_venv() -> Path:
    """A virtual environment with bench/requirements.txt (pinned), built on first use and kept in
    bench/out/ under a digest of the file, so the project's own venv and lock stay untouched."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:10]
    venv = OUT / f"datasette-venv-{digest}"
    done = venv / ".installed"  # written last: a half-built venv is rebuilt
    if done.is_file():
        return venv
    log(f"installing Datasette from {REQUIREMENTS.relative_to(ROOT)} into {venv.relative_to(ROOT)} ...")
    shutil.rmtree(venv, ignore_errors=True)
    python = str(venv / "bin" / "python")
    local_uv = Path(sys.executable).with_name("uv")
    uv = shutil.which("uv") or (str(local_uv) if local_uv.is_file() else None)
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
        _run([uv, "pip", "install", "--quiet", "--python", python, "-r", str(REQUIREMENTS)])
    else:
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([python, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)])
    if not (venv / "bin" / "datasette").is_file():
        raise SystemExit(f"Datasette was not installed into {venv}")
    done.write_text(REQUIREMENTS.read_text(encoding="utf-8"), encoding="utf-8")
    return venv


def _run(cmd: Sequence[str]) -> None:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} … failed: {(out.stderr or out.stdout).strip()[-2000:]}")


def datasette_versions(venv: Path) -> dict[str, Any]:
    out = subprocess.run([str(venv / "bin" / "datasette"), "--version"], capture_output=True, text=True, timeout=60)
    return {"datasette": out.stdout.strip().rsplit(" ", 1)[-1] or None}


def datasette_server(venv: Path, db_file: Path, work: Path) -> Server:
    port = free_port()
    cmd = [str(venv / "bin" / "datasette"), "serve", "-i", str(db_file), "--host", "127.0.0.1", "--port", str(port)]
    for name, value in DATASETTE_SETTINGS.items():
        cmd += ["--setting", name, value]
    return Server("datasette", cmd, _base_env(), port, "/-/versions.json", work / f"datasette-{port}.log")


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
