"""Exchange benchmark: a record lookup through OnceOnly's exchange against Datasette and a bare
Starlette endpoint on the same data, plus verify batches and a bulk CSV export.

    .venv/bin/python bench/exchange.py                     # 1,000,000 persons, SQLite and PostgreSQL
    .venv/bin/python bench/exchange.py --rows 100000 --backend sqlite --seconds 5

Loads N persons (bench/ingest.py's generated CSV) into a fresh OnceOnly home through the
platform's own functions, sets up the exchange as a department would (consumer system with an
API key; api, verify and bulk services over `person`; approved grants, masking on name and
mobile), then, with every server deployed as usual and a load client (wrk, else an asyncio
client) keeping --concurrency connections busy on loopback for --seconds after a warm-up:

- (a) OnceOnly `GET /api/v1/exchange/{service}/records/{citizen_id}`: API key, grant, masking,
  usage counting and a durable audit record per call (uvicorn, 2 workers); again with one
  connection, for the latency of a call without contention;
- (b) Datasette's JSON row endpoint `/{db}/{table}/{citizen_id}.json` on the same SQLite file,
  immutable mode (one process: Datasette has no workers option) — SQLite only;
- (c) a bare Starlette endpoint doing the same primary-key lookup and nothing else (uvicorn,
  2 workers; sqlite3 or psycopg);
- (d) the floor: the least work an audited lookup must do (key, row, masking, a durable SM3-chained
  audit record and usage counters by group commit), straight on Starlette and the driver
  (bench/exchange_floor.py, uvicorn, 2 workers) — not a target: it shows how close to (c) any
  implementation of the call can come in this stack;
- verify: `POST /api/v1/exchange/{service}/verify` with 1,000-record batches (--verify-concurrency);
- export: `GET /api/v1/exchange/{service}/export?format=csv`, all N rows, timed to the last byte.

Keys are drawn uniformly at random from the loaded rows; a, b, c and d walk the same sequence.
After (a) and verify it checks that every answered call has its audit record. Prints a table,
the targets as met/MISSED, and as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import OUT, hermetic_env, load_harness, machine, table
from exchange_load import LoadClient, LoadResult, Target, download
from exchange_servers import (
    DATASETTE_SETTINGS,
    WORKERS,
    Server,
    datasette_server,
    datasette_venv,
    datasette_versions,
    floor_server,
    http_get,
    http_post,
    json_body,
    onceonly_server,
    running,
    starlette_server,
)
from exchange_setup import (
    MASKING,
    VERIFY_BATCH,
    build_home,
    checkpoint_sqlite,
    sample_rows,
    verify_records,
    write_keys,
    write_verify_bodies,
)

from ingest import DEFAULT_ROWS, DEFAULT_SEED, code_version, ensure_csv
from onceonly.kit.crypto import sm3_hex

# Targets of the issue.
TARGET_A_B = 1.0
TARGET_A_C = 0.4
TARGET_VERIFY_P50_MS = 100
TARGET_EXPORT = 200_000
KEY_SAMPLE = 200_000  # keys in the lookup sequence (it wraps around when a run asks for more)
VERIFY_BATCHES = 100  # distinct 1,000-record bodies
DATA_PLANE = "/api/v1/exchange"
RECORD_ROUTE = "/api/v1/exchange/{service}/records/{key}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- one target ----------------------------------------------------------------------------------

def measure(client: LoadClient, server: Server, name: str, target: Target, *, connections: int, seconds: float,
            warmup: float, before_measured: Any = None) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run: the client's figures, the load average
    when it started and the server's CPU milliseconds per request."""
    if warmup > 0:
        client.run(target, connections=connections, seconds=warmup, name=f"{name}-warmup")
    if before_measured is not None:
        before_measured()
    load = [round(x, 2) for x in os.getloadavg()]
    cpu = server.cpu_seconds()
    result: LoadResult = client.run(target, connections=connections, seconds=seconds, name=name)
    cpu_ms = (server.cpu_seconds() - cpu) * 1000 / max(1, result.requests)
    log(f"  {name}: {result.req_per_s:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{result.ok:,} ok, {result.non_2xx:,} non-2xx, {result.errors:,} errors, "
        f"server CPU {cpu_ms:.2f} ms/request")
    return {**result.as_dict(), "connections": connections, "load_avg": load,
            "server_cpu_ms_per_request": round(cpu_ms, 3)}


class AuditCounter:
    """Counts a service's audit records of answered calls (kind call, status 200) in the bench
    database, so each measured run can be checked: answered 200 ≤ records written."""

    def __init__(self, backend: str, home: Path, url: str) -> None:
        self.backend, self.url = backend, url
        self.path = home / "onceonly.db"

    def count(self, service: str) -> int:
        sql = "SELECT count(*) FROM audit_records WHERE kind = 'call' AND service = {} AND status = 200"
        if self.backend == "sqlite":
            import sqlite3

            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                return int(conn.execute(sql.format("?"), (service,)).fetchone()[0])
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://", 1)) as pg:
            row = pg.execute(sql.format("%s"), (service,)).fetchone()
            return int(row[0]) if row else 0

    def settled(self, service: str, timeout: float = 60) -> int:
        """The count once requests still in flight when the client stopped have finished (it has
        not changed for a second)."""
        last, deadline = self.count(service), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.count(service)
            if now == last:
                break
            last = now
        return last

    def around(self, service: str) -> tuple[Any, Any]:
        """(before, after) hooks around the measured run; the difference is what it wrote."""
        state: dict[str, int] = {}

        def before() -> None:
            state["before"] = self.settled(service)

        def after(result: dict[str, Any], connections: int) -> dict[str, Any]:
            written = self.settled(service) - state["before"]
            answered = result["ok"]
            # A request answered just after the client stopped counting is audited but not counted:
            # up to one per connection. Fewer records than answers would be a lost record.
            return {"answered_200": answered, "audit_records": written, "missing": max(0, answered - written),
                    "in_flight_at_stop": max(0, written - answered),
                    "ok": answered <= written <= answered + connections}

        return before, after


# --- checks before loading (each target answers the right thing) -------------------------------

def check_onceonly_record(server: Server, service: str, key: str, auth: dict[str, str], row: dict[str, str]) -> None:
    status, raw = http_get(f"{server.base_url}{DATA_PLANE}/{service}/records/{quote(key)}", auth)
    doc = json_body(raw)
    if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("record"), dict):
        raise SystemExit(f"(a) record lookup answered {status}: {raw[:300]!r}")
    record = doc["record"]
    for name in MASKING:
        if record.get(name) == row[name] or "*" not in str(record.get(name)):
            raise SystemExit(f"(a) field {name} is not masked: {record.get(name)!r}")
    if record.get("citizen_id") != key:
        raise SystemExit(f"(a) answered the wrong record: {record}")


def check_plain_record(label: str, url: str, row: dict[str, str]) -> None:
    status, raw = http_get(url)
    doc = json_body(raw)
    text = json.dumps(doc, ensure_ascii=False) if doc is not None else raw.decode("utf-8", "replace")
    if status != 200 or row["name"] not in text or row["citizen_id"] not in text:
        raise SystemExit(f"({label}) {url} answered {status}: {text[:300]}")


def check_verify(server: Server, service: str, body: bytes, auth: dict[str, str]) -> dict[str, Any]:
    status, raw = http_post(f"{server.base_url}{DATA_PLANE}/{service}/verify", body, auth)
    doc = json_body(raw)
    if status != 200 or not isinstance(doc, dict) or len(doc.get("results") or []) != VERIFY_BATCH:
        raise SystemExit(f"verify answered {status}: {raw[:300]!r}")
    results = doc["results"]
    return {"exists": sum(1 for r in results if r.get("exists")), "match": sum(1 for r in results if r.get("match")),
            "of": len(results)}


def data_plane_ready(server: Server) -> bool:
    status, raw = http_get(server.base_url + "/openapi.json")
    doc = json_body(raw)
    return status == 200 and isinstance(doc, dict) and RECORD_ROUTE in (doc.get("paths") or {})


# --- export ----------------------------------------------------------------------------------------

def measure_export(server: Server, service: str, auth: dict[str, str], rows: int, fields: list[str],
                   runs: int) -> dict[str, Any]:
    url = f"{server.base_url}{DATA_PLANE}/{service}/export?format=csv"
    results = []
    for i in range(runs):
        load = [round(x, 2) for x in os.getloadavg()]
        got = download(url, auth)
        if got["status"] != 200:
            raise SystemExit(f"export answered {got['status']}: {got['head']}")
        exported = got["lines"] - 1  # the header line
        if exported != rows:
            raise SystemExit(f"export: expected {rows:,} rows, got {exported:,}")
        header = got["head"][0].lstrip("\ufeff").split(",") if got["head"] else []
        if header != fields:
            raise SystemExit(f"export: unexpected header {header}")
        if len(got["head"]) > 1 and "*" not in got["head"][1]:
            raise SystemExit(f"export: name and mobile are not masked: {got['head'][1]}")
        rate = exported / got["seconds"]
        log(f"  export run {i + 1}: {exported:,} rows, {got['bytes'] / 2**20:,.1f} MiB in {got['seconds']:.2f} s "
            f"= {rate:,.0f} rows/s (first byte after {got['first_byte_s'] * 1000:.0f} ms)")
        results.append({"rows": exported, "bytes": got["bytes"], "seconds": round(got["seconds"], 3),
                        "first_byte_ms": round(got["first_byte_s"] * 1000, 1), "rows_per_s": round(rate),
                        "load_avg": load})
    best = max(results, key=lambda r: r["rows_per_s"])
    return {"runs": results, "rows": rows, "rows_per_s": best["rows_per_s"], "seconds": best["seconds"],
            "mib_per_s": round(best["bytes"] / 2**20 / best["seconds"], 1), "content_type": "text/csv"}


# --- one backend -----------------------------------------------------------------------------------

def run_backend(backend: str, url: str, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    work: Path = ctx["work"]
    client: LoadClient = ctx["client"]
    home = work / backend
    log(f"{backend}: building the data set ({args.rows:,} persons) ...")
    world = build_home(home, url, ctx["csv"], args.rows, log)
    services = world["services"]
    auth = {"Authorization": f"Bearer {world['key']}"}
    first = ctx["sample"][0]
    out: dict[str, Any] = {"ingest_seconds": world["ingest_seconds"], "setup_seconds": world["setup_seconds"],
                           "services": services, "table": world["table"], "notes": []}
    load = {"connections": args.concurrency, "seconds": args.seconds, "warmup": args.warmup}
    audit = AuditCounter(backend, home, url)
    out["audit"] = {}

    server = onceonly_server(home, url, work)
    with running(server):
        if not data_plane_ready(server):
            note = f"the data plane ({RECORD_ROUTE}) is not served by this build: (a), verify and export skipped"
            log(f"  {note}")
            out["notes"].append(note)
        else:
            check_onceonly_record(server, services["api"], first["citizen_id"], auth, first)
            before, after = audit.around(services["api"])
            target = Target(server.base_url, f"{DATA_PLANE}/{services['api']}/records/",
                            headers=tuple(auth.items()), keys_file=ctx["keys"])
            out["a"] = measure(client, server, f"{backend} a onceonly", target, before_measured=before, **load)
            out["audit"]["a"] = after(out["a"], args.concurrency)
            log(f"  audit (a): {out['audit']['a']}")
            out["a_serial"] = measure(client, server, f"{backend} a onceonly 1 connection", target,
                                      connections=1, seconds=args.seconds, warmup=min(args.warmup, 1))

            checked = check_verify(server, services["verify"], ctx["verify_first"], auth)
            before, after = audit.around(services["verify"])
            target = Target(server.base_url, f"{DATA_PLANE}/{services['verify']}/verify",
                            headers=tuple(auth.items()), bodies_file=ctx["verify_bodies"])
            out["verify"] = measure(client, server, f"{backend} verify x{VERIFY_BATCH}", target,
                                    before_measured=before, connections=args.verify_concurrency,
                                    seconds=args.seconds, warmup=args.warmup)
            out["verify"].update(batch=VERIFY_BATCH, records_per_s=round(out["verify"]["req_per_s"] * VERIFY_BATCH),
                                 first_batch=checked)
            out["audit"]["verify"] = after(out["verify"], args.verify_concurrency)
            log(f"  audit (verify): {out['audit']['verify']}")

            out["export"] = measure_export(server, services["bulk"], auth, args.rows, world["fields"],
                                           args.export_runs)

    if backend == "sqlite":
        db_file = home / "onceonly.db"
        checkpoint_sqlite(db_file)
        ds = datasette_server(ctx["datasette_venv"], db_file, work)
        with running(ds):
            base = f"/{db_file.stem}/{world['table']}/"
            check_plain_record("b", f"{ds.base_url}{base}{quote(first['citizen_id'])}.json", first)
            target = Target(ds.base_url, base, ".json", keys_file=ctx["keys"])
            out["b"] = measure(client, ds, f"{backend} b datasette", target, **load)

    dsn = str(home / "onceonly.db") if backend == "sqlite" else url.replace("postgresql+psycopg://", "postgresql://")
    st = starlette_server(dsn, world["table"], world["key_field"], world["fields"], work)
    with running(st):
        check_plain_record("c", f"{st.base_url}/records/{quote(first['citizen_id'])}", first)
        target = Target(st.base_url, "/records/", keys_file=ctx["keys"])
        out["c"] = measure(client, st, f"{backend} c starlette", target, **load)

    floor = {"key_sm3": sm3_hex(world["key"]), "system": world["system"], "org": world["org"],
             "service": services["api"], "masking": json.dumps(MASKING)}
    fl = floor_server(dsn, world["table"], world["key_field"], world["fields"], floor, work)
    with running(fl):
        check_onceonly_record(fl, services["api"], first["citizen_id"], auth, first)
        target = Target(fl.base_url, f"{DATA_PLANE}/{services['api']}/records/", headers=tuple(auth.items()),
                        keys_file=ctx["keys"])
        out["d"] = measure(client, fl, f"{backend} d floor", target, **load)

    a = out.get("a")
    out["ratio_a_b"] = round(a["req_per_s"] / out["b"]["req_per_s"], 3) if a and "b" in out else None
    out["ratio_a_c"] = round(a["req_per_s"] / out["c"]["req_per_s"], 3) if a else None
    d = out.get("d")
    out["ratio_a_d"] = round(a["req_per_s"] / d["req_per_s"], 3) if a and d else None
    out["ratio_d_c"] = round(d["req_per_s"] / out["c"]["req_per_s"], 3) if d else None
    out["targets"] = targets(out)
    return out


def targets(res: dict[str, Any]) -> dict[str, bool | None]:
    verify, export = res.get("verify"), res.get("export")
    return {
        "a/b>=1.0": None if res["ratio_a_b"] is None else res["ratio_a_b"] >= TARGET_A_B,
        "a/c>=0.4": None if res["ratio_a_c"] is None else res["ratio_a_c"] >= TARGET_A_C,
        "verify_1000_p50_ms<100": None if not verify else verify["p50_ms"] < TARGET_VERIFY_P50_MS,
        "export_rows_per_s>=200000": None if not export else export["rows_per_s"] >= TARGET_EXPORT,
        "audit_complete": None if not res["audit"] else all(v["missing"] == 0 for v in res["audit"].values()),
    }


# --- driver ----------------------------------------------------------------------------------------

def prepare_inputs(args: argparse.Namespace, csv_path: Path, work: Path) -> dict[str, Any]:
    """The key sequence and verify bodies, drawn from the loaded rows (the same for every target)."""
    started = time.perf_counter()
    picks = KEY_SAMPLE + VERIFY_BATCHES * VERIFY_BATCH
    sample = sample_rows(csv_path, args.rows, picks, args.seed + 1)
    keys = write_keys(work / "keys.txt", sample[:KEY_SAMPLE], "citizen_id")
    bodies = write_verify_bodies(work / "verify.jsonl", verify_records(sample[KEY_SAMPLE:], args.seed + 2))
    with bodies.open("rb") as fh:
        first_body = fh.readline().rstrip(b"\n")
    log(f"inputs: {KEY_SAMPLE:,} keys, {VERIFY_BATCHES} verify batches of {VERIFY_BATCH:,} "
        f"({time.perf_counter() - started:.1f} s)")
    return {"sample": sample[:10], "keys": keys, "verify_bodies": bodies, "verify_first": first_body}


def run_postgresql(args: argparse.Namespace, ctx: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    harness = load_harness()
    server, cluster = harness.start_server()
    try:
        info["postgresql_settings"] = ("throwaway cluster: " + ", ".join(harness.SPEED_OPTIONS)
                                       if cluster is not None else "external server (ONCEONLY_TEST_PG_URL)")
        url = server.create_database("bench_exchange")
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as pg:
            row = pg.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else None
        return run_backend("postgresql", url, args, ctx)
    finally:
        if args.keep and cluster is not None:
            atexit.unregister(cluster.stop)  # the harness stops its cluster at exit otherwise
            log(f"postgresql kept running: {server.admin_url} (data in {cluster.data}; stop it with "
                f"{'runuser -u postgres -- ' if cluster.as_postgres else ''}"
                f"{cluster.bindir / 'pg_ctl'} stop -D {cluster.data} -m immediate)")
        else:
            if cluster is None:
                server.drop_database("bench_exchange")
            server.close()
            if cluster is not None:
                cluster.stop()


def report(results: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> None:
    lines = []
    labels = {"a": "(a) onceonly api", "b": "(b) datasette row", "c": "(c) starlette bare",
              "d": "(d) floor: least audited call", "a_serial": "(a) onceonly api",
              "verify": f"verify x{VERIFY_BATCH:,}"}
    for backend, res in results.items():
        for part, label in labels.items():
            r = res.get(part)
            if not r:
                continue
            ratio = None if part not in ("b", "c", "d") or not res.get("a") else res[f"ratio_a_{part}"]
            lines.append([backend, label, r["connections"], r["req_per_s"], r["p50_ms"], r["p99_ms"], r["ok"],
                          r["non_2xx"], r["errors"], r["server_cpu_ms_per_request"], ratio])
    print(f"{args.rows:,} persons; {info['cpus']} CPUs {info['cpu']}; Python {info['python']}, SQLite {info['sqlite']}"
          + (f", PostgreSQL {info['postgresql']}" if info.get("postgresql") else "")
          + f"; client {info['client']}; load average before/after "
            f"{info['load_avg_before'][0]}/{info['load_avg_after'][0]}")
    print(table(["backend", "target", "conns", "req/s", "p50 ms", "p99 ms", "answered", "non-2xx", "errors",
                 "server CPU ms/req", "a / this"], lines))
    exports = [[b, r["export"]["rows"], r["export"]["seconds"], r["export"]["rows_per_s"], r["export"]["mib_per_s"]]
               for b, r in results.items() if r.get("export")]
    if exports:
        print(table(["backend", "export rows (csv)", "seconds", "rows/s", "MiB/s"], exports))
    for backend, res in results.items():
        for name, audit in res["audit"].items():
            print(f"audit {backend} {name}: {audit['answered_200']:,} answered 200, {audit['audit_records']:,} "
                  f"audit records written ({audit['missing']} missing, {audit['in_flight_at_stop']} answered after "
                  "the client stopped counting)")
        if res.get("d"):
            print(f"floor {backend}: (d) / (c) = {res['ratio_d_c']}: the least work an audited call must do keeps "
                  f"this share of a bare lookup's rate; (a) runs at {res['ratio_a_d']} of (d)")
        for name, ok in res["targets"].items():
            print(f"target {backend} {name}: {'n/a' if ok is None else 'met' if ok else 'MISSED'}")
        for note in res["notes"]:
            print(f"note {backend}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="persons to load (default 1,000,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the load client (default 32)")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per target (default 15)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target, discarded (default 3)")
    parser.add_argument("--verify-concurrency", type=int, default=1,
                        help="connections sending 1,000-record verify batches (default 1: the latency of one batch)")
    parser.add_argument("--export-runs", type=int, default=2, help="full CSV exports; the fastest counts (default 2)")
    parser.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto",
                        help="load client: wrk (installed with apt-get when missing, as root), else asyncio")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=OUT, help="cache of generated CSVs and the Datasette venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes, databases and server")
    args = parser.parse_args(argv)
    for name in ("rows", "concurrency", "verify_concurrency", "export_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds < 1 or args.warmup < 0:
        parser.error("--seconds must be at least 1 and --warmup not negative")

    csv_path = ensure_csv(args.rows, args.seed, args.out)
    work = Path(tempfile.mkdtemp(prefix="onceonly-bench-exchange-"))
    hermetic_env(work / "home")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    client = LoadClient(work, args.client)
    info = machine()
    info.update(client=client.name, client_version=client.version,
                load_avg_before=[round(x, 2) for x in os.getloadavg()])
    import uvicorn

    info["uvicorn"] = uvicorn.__version__
    ctx: dict[str, Any] = {"work": work, "client": client, "csv": csv_path, **prepare_inputs(args, csv_path, work)}
    if "sqlite" in backends:
        ctx["datasette_venv"] = datasette_venv()
        info.update(datasette_versions(ctx["datasette_venv"]))
    results: dict[str, Any] = {}
    try:
        for backend in backends:
            results[backend] = (run_backend(backend, "", args, ctx) if backend == "sqlite"
                                else run_postgresql(args, ctx, info))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    info["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    servers = {"onceonly": f"uvicorn onceonly.app:create_app --factory --workers {WORKERS} --no-access-log",
               "starlette": f"uvicorn exchange_starlette:app --workers {WORKERS} --no-access-log",
               "floor": f"uvicorn exchange_floor:app --workers {WORKERS} --no-access-log",
               "datasette": "datasette serve -i FILE " + " ".join(f"--setting {k} {v}"
                                                                   for k, v in DATASETTE_SETTINGS.items())}
    report(results, info, args)
    print(json.dumps({"rows": args.rows, "seed": args.seed, "concurrency": args.concurrency, "seconds": args.seconds,
                      "warmup": args.warmup, "verify_concurrency": args.verify_concurrency, "servers": servers,
                      **results, "machine": info, "code": code_version()}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
