"""Ingest benchmark: a person CSV through the full pipeline, against the floor of each backend.

    .venv/bin/python bench/ingest.py                    # 1,000,000 rows, SQLite and PostgreSQL
    .venv/bin/python bench/ingest.py --rows 200000 --backend sqlite
    .venv/bin/python bench/ingest.py --size-gb 1 --backend sqlite   # about 7M rows, a 1 GB file

Generates (once per row count and seed, cached in bench/out/) a deterministic person CSV of 12
columns: citizen_id, name, sex, ethnicity, birth_date, region, address, mobile, household_no,
registered_date, education, marital_status. Every row is valid: real GB/T 2260 county codes of
宣城市 (3418xx), IDs with a real birth date, the sex in digit 17 and a correct check digit.

Per backend, each phase in its own fresh process (so its peak RSS is its own):

- floor: SQLite — plain `executemany` of the csv module's rows into a table with the same 12
  columns and PRIMARY KEY (citizen_id), one transaction, the platform's pragmas (WAL,
  synchronous=NORMAL); PostgreSQL — `COPY ... FROM STDIN (FORMAT csv)` into such a table.
- setup: a fresh OnceOnly home and database, an organization, a published resource `person`
  (citizen_id key with check citizen_id, sex/ethnicity/region bound to code lists, mobile check,
  enums, cross rule citizen_id_agrees).
- ingest: `ingest_file(db, Actor.cli(), "person", csv, IngestOptions())` — all inserts.
- reingest: the unchanged file again — all rows unchanged.

Prints a table (rows/s, ratio to the floor, peak RSS) and, as its LAST line, one JSON object with
every figure. PostgreSQL is the test suite's throwaway server (tests/harness.py: initdb in a temp
dir, fsync=off, synchronous_commit=off, full_page_writes=off), or ONCEONLY_TEST_PG_URL if set.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import csv
import hashlib
import json
import os
import pstats
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from bisect import bisect
from collections.abc import Iterator
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import Any

from common import OUT, ROOT, hermetic_env, in_child, load_harness, machine, peak_rss_mb, rss_mb, table

GENERATOR_VERSION = 2  # bump when the generator changes (its fingerprint catches most changes anyway)
DEFAULT_ROWS = 1_000_000
DEFAULT_SEED = 2024
RESOURCE = "person"

# Targets of the issue (SQLite).
TARGET_INGEST = 150_000
TARGET_RATIO = 0.5
TARGET_REINGEST = 300_000
TARGET_RSS_MB = 400  # on a 1 GB file

# name, title, type, length, extra FieldSpec attributes. One list drives the CSV header, the
# resource and the floor tables, so they cannot drift apart.
EDUCATION = ("10", "20", "30", "40", "60", "70", "80", "90")  # GB/T 4658
MARITAL = ("10", "20", "30", "40")  # GB/T 2261.2
COLUMNS: list[tuple[str, str, str, int | None, dict[str, Any]]] = [
    ("citizen_id", "公民身份号码", "string", 18, {"check": "citizen_id", "sensitivity": "sensitive"}),
    ("name", "姓名", "string", 50, {"required": True, "sensitivity": "personal"}),
    ("sex", "性别", "string", 1, {"required": True, "code_list": "GB/T 2261.1"}),
    ("ethnicity", "民族", "string", 2, {"code_list": "GB 3304"}),
    ("birth_date", "出生日期", "date", None, {"required": True, "sensitivity": "personal"}),
    ("region", "户籍地行政区划", "string", 6, {"code_list": "GB/T 2260"}),
    ("address", "户籍地址", "string", 200, {"sensitivity": "personal"}),
    ("mobile", "手机号码", "string", 11, {"check": "mobile", "sensitivity": "personal"}),
    ("household_no", "户号", "string", 12, {"pattern": r"\d{12}"}),
    ("registered_date", "户籍登记日期", "date", None, {}),
    ("education", "文化程度", "string", 2, {"enum": list(EDUCATION)}),
    ("marital_status", "婚姻状况", "string", 2, {"enum": list(MARITAL)}),
]
HEADER = [c[0] for c in COLUMNS]
RULES = [{"rule": "citizen_id_agrees", "citizen_id": "citizen_id", "sex": "sex", "birth_date": "birth_date"}]


# --- the input file -------------------------------------------------------------------------

COUNTIES = (("341802", "宣州区"), ("341821", "郎溪县"), ("341823", "泾县"), ("341824", "绩溪县"),
            ("341825", "旌德县"), ("341881", "宁国市"), ("341882", "广德市"))
COUNTY_WEIGHTS = (33, 12, 12, 6, 5, 14, 18)
ROADS = ("梅园路", "鳌峰路", "叠嶂路", "薰化路", "昭亭路", "宛陵路", "状元路", "府山路", "阳德路", "水阳江大道",
         "敬亭路", "谢朓路", "锦城路", "科技大道", "人民路", "建设路", "解放路", "和平路", "文昌路", "中山路")
MINORITIES = ("03", "22", "11", "06", "08", "15")  # 回族, 畲族, 满族, 苗族, 壮族, 土家族 (GB 3304)
FIRST_BIRTH, LAST_BIRTH = date(1930, 1, 1).toordinal(), date(2023, 12, 31).toordinal()
FIRST_REGISTERED, LAST_REGISTERED = date(1958, 1, 1).toordinal(), date(2024, 6, 30).toordinal()


def person_rows(rows: int, seed: int) -> Iterator[list[str]]:
    """Deterministic valid person rows: the same (rows, seed) always gives the same file."""
    from faker.providers.person.zh_CN import Provider as FakerNames
    from faker.providers.phone_number.zh_CN import Provider as FakerPhones

    from onceonly.kit.identifiers import MOBILE_RE, make_citizen_id

    rng = random.Random(seed)
    surnames = list(FakerNames.last_names)
    surname_cum = list(accumulate(float(w) for w in FakerNames.last_names.values()))
    male_names, female_names = list(FakerNames.first_names_male), list(FakerNames.first_names_female)
    prefixes = sorted({str(p) for p in FakerPhones.phonenumber_prefixes if MOBILE_RE.match(f"{p}00000000")})
    county_cum = list(accumulate(COUNTY_WEIGHTS))
    sequences: dict[int, int] = {}  # (birth day, county, sex) → next ID sequence number: IDs never repeat
    random_, randrange, choice = rng.random, rng.randrange, rng.choice
    for _ in range(rows):
        male = random_() < 0.51
        while True:
            ci = bisect(county_cum, random_() * county_cum[-1])
            day = randrange(FIRST_BIRTH, LAST_BIRTH + 1)
            slot = (day * 8 + ci) * 2 + male
            seq = sequences.get(slot, 0)
            if seq < 500:  # make_citizen_id has 500 sequence numbers per day, county and sex
                sequences[slot] = seq + 1
                break
        code = COUNTIES[ci][0]
        birth = date.fromordinal(day)
        cid = make_citizen_id(code, birth, seq, male)
        name = surnames[bisect(surname_cum, random_() * surname_cum[-1])] + choice(male_names if male else female_names)
        home = ci if random_() < 0.9 else bisect(county_cum, random_() * county_cum[-1])
        home_code, home_name = COUNTIES[home]
        address = (f"安徽省宣城市{home_name}{choice(ROADS)}{randrange(1, 400)}号{randrange(1, 30)}栋"
                   f"{randrange(1, 7)}单元{randrange(1, 33)}{randrange(1, 5):02d}室")
        registered = date.fromordinal(randrange(max(day, FIRST_REGISTERED), LAST_REGISTERED + 1))
        yield [cid, name, "1" if male else "2", "01" if random_() < 0.95 else choice(MINORITIES), birth.isoformat(),
               home_code, address, f"{choice(prefixes)}{randrange(10**8):08d}", f"{home_code}{randrange(10**6):06d}",
               registered.isoformat(), choice(EDUCATION), choice(MARITAL)]


def generator_fingerprint(seed: int) -> str:
    """A digest of the first rows the generator makes now. Part of the cache name, so a change of
    the generator or of what it builds on (make_citizen_id, Faker's lists) never reuses an old file."""
    digest = hashlib.sha256(f"v{GENERATOR_VERSION}".encode())
    for row in person_rows(200, seed):
        digest.update(",".join(row).encode())
    return digest.hexdigest()[:10]


def ensure_csv(rows: int, seed: int, out: Path) -> Path:
    """The CSV for (rows, seed), generated on first use and cached."""
    path = out / f"person-{rows}-s{seed}-{generator_fingerprint(seed)}.csv"
    if path.is_file():
        return path
    out.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    log(f"generating {path.name} ({rows:,} rows) ...")
    with partial.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(person_rows(rows, seed))
    partial.replace(path)
    log(f"generated {path.stat().st_size / 2**20:,.1f} MiB in {time.perf_counter() - started:,.1f} s")
    return path


def rows_for_size(size_gb: float, seed: int) -> int:
    """Rows that make a file of about size_gb GiB (from the mean row length of a 20,000-row sample)."""
    sample = 20_000
    out = _CountingWriter()
    csv.writer(out, lineterminator="\n").writerows(person_rows(sample, seed))
    return int(size_gb * 2**30 / (out.bytes / sample))


class _CountingWriter:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8"))
        return len(text)


# --- phases (each runs in a fresh spawned process) ------------------------------------------


def phase_setup(home: str, url: str) -> dict[str, Any]:
    """A fresh OnceOnly database with the org and the published `person` resource."""
    from onceonly.accounts.actor import Actor
    from onceonly.catalog import orgs, service
    from onceonly.catalog.schemas import OrgIn, ResourceSpec
    from onceonly.db import Database
    from onceonly.kit.identifiers import make_uscc
    from onceonly.ops.setup import initialize
    from onceonly.settings import load_settings

    started = time.perf_counter()
    db = Database(load_settings(home=Path(home), database_url=url))
    try:
        initialize(db)
        actor = Actor.cli()
        with db.session(write=True) as session:
            org = orgs.add_org(session, actor, OrgIn(code=make_uscc("1", "1", "341800", "34180001"),
                                                     name="宣城市公安局", region="341800"))
            fields = [{"name": n, "title": t, "type": ty, **({"length": ln} if ln else {}), **extra}
                      for n, t, ty, ln, extra in COLUMNS]
            spec = ResourceSpec.model_validate({
                "name": RESOURCE, "title": "户籍人口基本信息（基准测试）", "provider": org.code,
                "catalog": f"3{org.number:02d}", "share_type": "unconditional", "key_fields": ["citizen_id"],
                "query_fields": [], "fields": fields, "rules": RULES})
            service.publish_resource(session, actor, service.create_resource(session, actor, spec))
    finally:
        db.dispose()
    return {"seconds": time.perf_counter() - started}


def phase_ingest(home: str, url: str, csv_path: str, profile: str | None) -> dict[str, Any]:
    """One ingest_file call of the whole file, timed from the call to its report."""
    from onceonly.accounts.actor import Actor
    from onceonly.db import Database
    from onceonly.ingest.schemas import IngestOptions
    from onceonly.ingest.service import ingest_file
    from onceonly.settings import load_settings

    db = Database(load_settings(home=Path(home), database_url=url))
    try:
        with db.engine.connect():  # connect (and set the pragmas) outside the timing
            pass
        base = rss_mb()
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        report = ingest_file(db, Actor.cli(), RESOURCE, Path(csv_path), IngestOptions())
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    finally:
        db.dispose()
    if profiler and profile:
        profiler.dump_stats(profile)
        with open(profile + ".txt", "w", encoding="utf-8") as fh:
            for key in ("tottime", "cumulative"):
                pstats.Stats(profile, stream=fh).strip_dirs().sort_stats(key).print_stats(40)
    return {"seconds": seconds, "read": report.read, "inserted": report.inserted, "updated": report.updated,
            "unchanged": report.unchanged, "rejected": report.rejected, "rule_counts": report.rule_counts,
            "status": report.status, "base_rss_mb": base, "peak_rss_mb": peak_rss_mb()}


def _floor_ddl(typed: dict[str, str]) -> str:
    cols = []
    for name, _title, ty, length, extra in COLUMNS:
        sql = typed["date"] if ty == "date" else f"VARCHAR({length})"
        if name == "citizen_id" or extra.get("required"):
            sql += " NOT NULL"
        cols.append(f"{name} {sql}")
    return f"CREATE TABLE floor ({', '.join(cols)}, PRIMARY KEY (citizen_id))"


def phase_sqlite_floor(db_path: str, csv_path: str) -> dict[str, Any]:
    """csv module + executemany into an equally keyed table, one transaction, no validation."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_floor_ddl({"date": "DATE"}))
        insert = f"INSERT INTO floor VALUES ({', '.join('?' * len(COLUMNS))})"
        started = time.perf_counter()
        with open(csv_path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            conn.execute("BEGIN")
            conn.executemany(insert, reader)
            conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM floor").fetchone()[0]
    finally:
        conn.close()
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def phase_pg_copy(url: str, csv_path: str) -> dict[str, Any]:
    """COPY FROM STDIN (FORMAT csv) into an equally keyed table, one transaction, no validation."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        conn.execute(_floor_ddl({"date": "DATE"}))
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, open(csv_path, "rb") as fh:
            with cur.copy("COPY floor FROM STDIN (FORMAT csv, HEADER true)") as copy:
                while block := fh.read(1 << 20):
                    copy.write(block)
            conn.commit()
        seconds = time.perf_counter() - started
        row = conn.execute("SELECT count(*) FROM floor").fetchone()
        version = conn.execute("SHOW server_version").fetchone()
    return {"seconds": seconds, "rows": row[0] if row else 0, "peak_rss_mb": peak_rss_mb(),
            "server_version": version[0] if version else None}


# --- driver ---------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (work in progress)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "src_dirty": bool(git("status", "--porcelain", "src"))}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_ingest(backend: str, phase: str, rows: int, result: dict[str, Any]) -> None:
    expected = "inserted" if phase == "ingest" else "unchanged"
    if result["status"] != "committed" or result["read"] != rows or result[expected] != rows:
        raise SystemExit(f"{backend} {phase}: expected {rows:,} rows {expected}, got {result}")


def run_backend(backend: str, rows: int, csv_path: Path, work: Path, url: str, floor_url: str,
                profile_dir: Path | None) -> dict[str, Any]:
    home = work / backend
    home.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        log(f"{backend}: floor (executemany) ...")
        floor = in_child(phase_sqlite_floor, str(work / "floor.db"), str(csv_path))
    else:
        log(f"{backend}: floor (COPY) ...")
        floor = in_child(phase_pg_copy, floor_url, str(csv_path))
    if floor["rows"] != rows:
        raise SystemExit(f"{backend} floor: expected {rows:,} rows, got {floor['rows']:,}")
    log(f"{backend}: floor {rows / floor['seconds']:,.0f} rows/s; setup ...")
    setup = in_child(phase_setup, str(home), url)
    phases: dict[str, dict[str, Any]] = {}
    for phase in ("ingest", "reingest"):
        log(f"{backend}: {phase} ...")
        profile = str(profile_dir / f"{backend}-{phase}.prof") if profile_dir else None
        phases[phase] = in_child(phase_ingest, str(home), url, str(csv_path), profile)
        _check_ingest(backend, phase, rows, phases[phase])
        log(f"{backend}: {phase} {rows / phases[phase]['seconds']:,.0f} rows/s, "
            f"peak RSS {phases[phase]['peak_rss_mb']:,.0f} MiB")
    floor_rate = rows / floor["seconds"]
    ingest_rate = rows / phases["ingest"]["seconds"]
    reingest_rate = rows / phases["reingest"]["seconds"]
    return {
        "floor_method": "executemany" if backend == "sqlite" else "copy",
        "ingest_rows_per_s": round(ingest_rate),
        "reingest_rows_per_s": round(reingest_rate),
        "floor_rows_per_s": round(floor_rate),
        "ratio": round(ingest_rate / floor_rate, 3),
        "reingest_ratio": round(reingest_rate / floor_rate, 3),
        "peak_rss_mb": phases["ingest"]["peak_rss_mb"],
        "reingest_peak_rss_mb": phases["reingest"]["peak_rss_mb"],
        "floor_peak_rss_mb": floor["peak_rss_mb"],
        "base_rss_mb": phases["ingest"]["base_rss_mb"],
        "ingest_seconds": round(phases["ingest"]["seconds"], 2),
        "reingest_seconds": round(phases["reingest"]["seconds"], 2),
        "floor_seconds": round(floor["seconds"], 2),
        "setup_seconds": round(setup["seconds"], 2),
        **({"server_version": floor["server_version"]} if "server_version" in floor else {}),
    }


def targets(res: dict[str, Any], file_bytes: int) -> dict[str, bool | None]:
    """The issue's SQLite targets; the RSS one is judged only on a file of 1 GB or more."""
    return {
        "ingest_rows_per_s>=150000": res["ingest_rows_per_s"] >= TARGET_INGEST,
        "ratio>=0.5": res["ratio"] >= TARGET_RATIO,
        "reingest_rows_per_s>=300000": res["reingest_rows_per_s"] >= TARGET_REINGEST,
        "peak_rss_mb<400_on_1GB": (res["peak_rss_mb"] < TARGET_RSS_MB) if file_bytes >= 10**9 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the CSV (default 1,000,000)")
    parser.add_argument("--size-gb", type=float, default=None,
                        help="instead of --rows: rows for a file of about this many GiB (1 → about 7M rows)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=OUT, help="cache directory of generated CSVs (bench/out)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes, databases and server")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="cProfile the ingest phases into DIR (timings then include profiler overhead)")
    args = parser.parse_args(argv)
    rows = rows_for_size(args.size_gb, args.seed) if args.size_gb else args.rows
    if rows < 1:
        parser.error("--rows must be positive")
    csv_path = ensure_csv(rows, args.seed, args.out)
    file_bytes = csv_path.stat().st_size
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="onceonly-bench-"))
    hermetic_env(work / "home")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    info = machine()
    info["load_avg_before"] = [round(x, 2) for x in os.getloadavg()]
    try:
        for backend in backends:
            if backend == "sqlite":
                results[backend] = run_backend(backend, rows, csv_path, work, "", "", args.profile)
                results[backend]["targets"] = targets(results[backend], file_bytes)
                continue
            harness = load_harness()
            server, cluster = harness.start_server()
            try:
                info["postgresql_settings"] = "throwaway cluster: " + ", ".join(harness.SPEED_OPTIONS) \
                    if cluster is not None else "external server (ONCEONLY_TEST_PG_URL)"
                url = server.create_database("bench_ingest")
                floor_url = server.create_database("bench_floor")
                results[backend] = run_backend(backend, rows, csv_path, work, url, floor_url, args.profile)
                info["postgresql"] = results[backend].pop("server_version")
            finally:
                if args.keep and cluster is not None:
                    atexit.unregister(cluster.stop)  # the harness stops its cluster at exit otherwise
                    log(f"postgresql kept running: {server.admin_url} (data in {cluster.data}; stop it with "
                        f"{'runuser -u postgres -- ' if cluster.as_postgres else ''}"
                        f"{cluster.bindir / 'pg_ctl'} stop -D {cluster.data} -m immediate)")
                else:
                    if cluster is None:
                        for name in ("bench_ingest", "bench_floor"):
                            server.drop_database(name)
                    server.close()
                    if cluster is not None:
                        cluster.stop()
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    info["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    lines = []
    for backend, res in results.items():
        floor_name = f"floor ({res['floor_method']})"
        lines += [
            [backend, floor_name, rows, res["floor_seconds"], res["floor_rows_per_s"], 1.0, res["floor_peak_rss_mb"]],
            [backend, "ingest (validated)", rows, res["ingest_seconds"], res["ingest_rows_per_s"], res["ratio"],
             res["peak_rss_mb"]],
            [backend, "re-ingest (unchanged)", rows, res["reingest_seconds"], res["reingest_rows_per_s"],
             res["reingest_ratio"], res["reingest_peak_rss_mb"]],
        ]
    print(f"{rows:,} rows, {file_bytes / 2**20:,.1f} MiB CSV; {info['cpus']} CPUs {info['cpu']}; "
          f"Python {info['python']}, SQLite {info['sqlite']}"
          + (f", PostgreSQL {info['postgresql']}" if "postgresql" in info else "")
          + f"; load average before/after {info['load_avg_before'][0]}/{info['load_avg_after'][0]}")
    print(table(["backend", "phase", "rows", "seconds", "rows/s", "x floor", "peak RSS MiB"], lines))
    if "sqlite" in results:
        for name, ok in results["sqlite"]["targets"].items():
            print(f"target sqlite {name}: {'n/a (file < 1 GB)' if ok is None else 'met' if ok else 'MISSED'}")
    print(json.dumps({"rows": rows, "file_bytes": file_bytes, "seed": args.seed, **results, "machine": info,
                      "code": code_version()},
                     ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
