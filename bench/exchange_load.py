"""The load client of bench/exchange.py: wrk (Debian's package) with a Lua script that walks a
file of keys (or request bodies), or — where wrk cannot be had — an asyncio HTTP/1.1 client in
a process of its own. Both keep N connections busy for a fixed time on loopback and report
requests, non-2xx answers, errors, req/s and the latency percentiles of every answered request.

Every run walks the same sequences: thread (or connection group) t of T starts at position
t·n/T of the file, so targets compared with each other are asked for the same keys in the
same order. Keep this module's top-level imports to the standard library (spawned children)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WRK_TIMEOUT_S = 10  # a request slower than this counts as a timeout (wrk's default is 2 s)


@dataclass
class LoadResult:
    client: str  # "wrk" or "asyncio"
    seconds: float
    requests: int  # responses received (any status)
    non_2xx: int
    errors: int  # connect, read, write errors and timeouts
    req_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    bytes: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


@dataclass(frozen=True)
class Target:
    """What to load: GET base_url + prefix + key + suffix for each key of `keys_file`, or POST
    each line of `bodies_file` to base_url + prefix."""

    base_url: str
    prefix: str
    suffix: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    keys_file: Path | None = None
    bodies_file: Path | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- wrk ---------------------------------------------------------------------------------------

def find_wrk(install: bool = True) -> str | None:
    """wrk on PATH; installed from Debian's archive when missing and running as root."""
    path = shutil.which("wrk")
    if path or not install:
        return path
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (apt-get install wrk) ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in range(2):  # the second time after refreshing the package lists
            if attempt:
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            cmd = ["apt-get", "install", "-y", "-qq", "wrk"]
            if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0:
                break
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=30)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "wrk"


def _lua_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)  # a JSON string is a valid Lua string literal here


_LUA = """
local threads, counter = {threads}, 0
local items, n, pos = {{}}, 0, 0
local method, prefix, suffix, file = {method}, {prefix}, {suffix}, {file}
local headers = {{{headers}}}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(file) do
    if #line > 0 then n = n + 1; items[n] = line end
  end
  pos = math.floor(n * tid / threads)
end

function request()
  pos = pos % n + 1
  if method == "GET" then
    return wrk.format("GET", prefix .. items[pos] .. suffix, headers)
  end
  return wrk.format("POST", prefix, headers, items[pos])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{{"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_script(target: Target, threads: int, work: Path, name: str) -> Path:
    headers = dict(target.headers)
    if target.bodies_file is not None:
        headers.setdefault("Content-Type", "application/json")
    path = work / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".lua")
    path.write_text(_LUA.format(
        threads=threads, method=_lua_string("POST" if target.bodies_file else "GET"),
        prefix=_lua_string(urlsplit(target.base_url).path.rstrip("/") + target.prefix),
        suffix=_lua_string(target.suffix), file=_lua_string(str(target.bodies_file or target.keys_file)),
        headers=", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())),
        encoding="utf-8")
    return path


def run_wrk(wrk: str, target: Target, *, connections: int, seconds: float, work: Path, name: str) -> LoadResult:
    threads = max(1, min(2, connections))
    script = wrk_script(target, threads, work, name)
    parts = urlsplit(target.base_url)
    cmd = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(script), f"{parts.scheme}://{parts.netloc}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    s = json.loads(lines[-1])
    secs = s["duration_us"] / 1e6
    return LoadResult(
        client="wrk", seconds=round(secs, 3), requests=s["requests"], non_2xx=s["status"],
        errors=s["connect"] + s["read"] + s["write"] + s["timeout"],
        req_per_s=round(s["requests"] / secs, 1) if secs else 0.0,
        p50_ms=s["p50_us"] / 1000, p90_ms=s["p90_us"] / 1000, p99_ms=s["p99_us"] / 1000, max_ms=s["max_us"] / 1000,
        mean_ms=round(s["mean_us"] / 1000, 3), bytes=s["bytes"],
        detail={k: s[k] for k in ("connect", "read", "write", "timeout")} | {"threads": threads})


# --- asyncio fallback ----------------------------------------------------------------------------

class _Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read one response (Content-Length or
    chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, int]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        size = len(head)
        if chunked:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                n = int(line.split(b";")[0], 16)
                await self.reader.readexactly(n + 2)
                size += len(line) + n + 2
                if n == 0:
                    break
        elif length is not None:
            size += len(await self.reader.readexactly(length))
        if close:
            self.close()
        return status, size

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _raw_requests(target: Target) -> list[bytes]:
    parts = urlsplit(target.base_url)
    base = parts.path.rstrip("/") + target.prefix
    head = f"Host: {parts.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in target.headers)
    if target.bodies_file is not None:
        out = []
        for line in target.bodies_file.read_text(encoding="utf-8").splitlines():
            if line:
                body = line.encode("utf-8")
                out.append(f"POST {base} HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return out
    assert target.keys_file is not None
    return [f"GET {base}{key}{target.suffix} HTTP/1.1\r\n{head}\r\n".encode()
            for key in target.keys_file.read_text(encoding="utf-8").split()]


async def _load(target: Target, connections: int, seconds: float) -> dict[str, Any]:
    raws = _raw_requests(target)
    parts = urlsplit(target.base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    groups = max(1, min(2, connections))  # like wrk's threads: the same start positions
    latencies: list[int] = []
    counts = {"requests": 0, "non_2xx": 0, "errors": 0, "bytes": 0}
    deadline = time.perf_counter() + seconds

    async def worker(conn_no: int) -> None:
        group = conn_no % groups
        pos = len(raws) * group // groups + conn_no // groups
        conn = _Conn(host, port)
        while time.perf_counter() < deadline:
            raw = raws[pos % len(raws)]
            pos += max(1, connections // groups)
            started = time.perf_counter_ns()
            try:
                status, size = await asyncio.wait_for(conn.request(raw), WRK_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                counts["errors"] += 1
                conn.close()
                continue
            latencies.append(time.perf_counter_ns() - started)
            counts["requests"] += 1
            counts["bytes"] += size
            if not 200 <= status < 300:
                counts["non_2xx"] += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return {"seconds": time.perf_counter() - started, "latencies_ns": latencies, **counts}


def _percentile(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return 0.0
    rank = min(len(sorted_ns) - 1, max(0, round(p / 100 * len(sorted_ns) + 0.5) - 1))
    return round(sorted_ns[rank] / 1e6, 3)


def run_asyncio(target: Target, connections: int, seconds: float) -> dict[str, Any]:
    """Runs in its own spawned process (so it has a core's worth of its own); uvloop if present."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    raw = runner(_load(target, connections, seconds))
    lat = sorted(raw["latencies_ns"])
    secs = raw["seconds"]
    return asdict(LoadResult(
        client="asyncio", seconds=round(secs, 3), requests=raw["requests"], non_2xx=raw["non_2xx"],
        errors=raw["errors"], req_per_s=round(raw["requests"] / secs, 1) if secs else 0.0,
        p50_ms=_percentile(lat, 50), p90_ms=_percentile(lat, 90), p99_ms=_percentile(lat, 99),
        max_ms=round(lat[-1] / 1e6, 3) if lat else 0.0,
        mean_ms=round(sum(lat) / len(lat) / 1e6, 3) if lat else 0.0, bytes=raw["bytes"]))


class LoadClient:
    """wrk when it can be had, else the asyncio client in a spawned process."""

    def __init__(self, work: Path, prefer: str = "auto") -> None:
        self.work = work
        self.wrk = find_wrk() if prefer in ("auto", "wrk") else None
        if prefer == "wrk" and self.wrk is None:
            raise SystemExit("--client wrk: wrk is not installed and could not be installed (apt-get as root)")
        self.name = "wrk" if self.wrk else "asyncio"
        self.version = wrk_version(self.wrk) if self.wrk else f"asyncio client, Python {sys.version.split()[0]}"

    def run(self, target: Target, *, connections: int, seconds: float, name: str) -> LoadResult:
        if self.wrk:
            return run_wrk(self.wrk, target, connections=connections, seconds=seconds, work=self.work, name=name)
        from common import in_child

        return LoadResult(**in_child(run_asyncio, target, connections, seconds))


# --- a streamed download -------------------------------------------------------------------------

def download(url: str, headers: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """GET url and read the body to its end in 1 MiB blocks: status, bytes, lines, seconds from
    sending the request to the last byte, time to the first byte, and the first two lines."""
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    try:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        first_byte = time.perf_counter() - started
        nbytes = lines = 0
        head = b""
        while block := resp.read(1 << 20):
            nbytes += len(block)
            lines += block.count(b"\n")
            if len(head) < 4096:
                head += block[:4096]
        seconds = time.perf_counter() - started
        return {"status": resp.status, "content_type": resp.getheader("content-type"), "bytes": nbytes,
                "lines": lines, "seconds": seconds, "first_byte_s": first_byte,
                "head": head.decode("utf-8", "replace").splitlines()[:2]}
    finally:
        conn.close()
