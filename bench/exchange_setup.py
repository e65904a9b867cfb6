"""The data of bench/exchange.py: a fresh OnceOnly home with N persons loaded through the
platform's own functions, the exchange set up as a department would (a consumer organization,
a business system with an API key, api / verify / bulk services over `person`, approved grants
with masking on name and mobile), and the inputs of the load runs (a key sequence, verify
batches) drawn uniformly at random from the loaded rows.

The persons are bench/ingest.py's generated CSV (cached in bench/out/), loaded with
`ingest_file` into the resource `person` that bench/ingest.py publishes (key citizen_id)."""

from __future__ import annotations

import csv
import json
import random
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from common import in_child

from ingest import HEADER, RESOURCE, phase_ingest, phase_setup

SYSTEM = "rsj-shebao"
CONSUMER = "宣城市人力资源和社会保障局"
MASKING = {"name": "name", "mobile": "mobile"}
RATE_LIMIT = 100_000  # calls per minute: the most a grant may allow
DAILY_QUOTA = 1_000_000_000  # records per day: the most a grant may allow
VERIFY_FIELDS = ["citizen_id", "name", "sex", "birth_date", "mobile"]
VERIFY_BATCH = 1_000


def phase_exchange(home: str, url: str) -> dict[str, Any]:
    """Consumer organization, system, key, the three services and their approved grants."""
    from onceonly.accounts.actor import Actor
    from onceonly.catalog import orgs
    from onceonly.catalog.repository import resource_by_code
    from onceonly.catalog.schemas import OrgIn
    from onceonly.db import Database
    from onceonly.exchange import applications, credentials, services, systems
    from onceonly.exchange.schemas import ApplicationIn, DecisionIn, ServiceIn, SystemIn
    from onceonly.kit.identifiers import make_uscc
    from onceonly.settings import load_settings
    from onceonly.store.tables import table_for

    started = time.perf_counter()
    settings = load_settings(home=Path(home), database_url=url)
    db = Database(settings)
    actor = Actor.cli()  # the console acts as the platform operator and may take both decision steps
    try:
        with db.session(write=True) as session:
            consumer = orgs.add_org(session, actor, OrgIn(code=make_uscc("1", "1", "341800", "34180002"),
                                                          name=CONSUMER, region="341800"))
            system, _ = systems.create_system(session, actor, SystemIn(
                code=SYSTEM, name="社会保险经办系统", org=consumer.code, contact="王工 0563-1234567"),
                settings.ensure_secret())
            _, key = credentials.create_key(session, actor, system, days=30)
            res = resource_by_code(session, _resource_code(session))
            assert res is not None
            all_fields = [f.name for f in res.fields]
            codes: dict[str, str] = {}
            for mode, fields in (("api", all_fields), ("verify", VERIFY_FIELDS), ("bulk", all_fields)):
                service = services.publish_service(session, actor, ServiceIn(
                    resource=res.code, mode=mode, fields=fields, name=f"户籍人口基本信息（{mode}）"))
                app = applications.apply(session, actor, system, service, ApplicationIn(
                    system=system.code, service=service.code, fields=fields, purpose="社会保险参保登记核验（基准测试）",
                    legal_basis="《社会保险法》第五十八条", expected_volume=DAILY_QUOTA,
                    expires_on=date.today() + timedelta(days=30)))
                terms = {"masking": MASKING if mode != "verify" else {}, "rate_limit": RATE_LIMIT,
                         "daily_quota": DAILY_QUOTA}
                while app.status in ("pending_provider", "pending_operator"):
                    app = applications.decide(session, actor, app, DecisionIn.model_validate(
                        {"decision": "approve", **(terms if app.status == "pending_provider" else {})}))
                if app.status != "approved":
                    raise RuntimeError(f"application for the {mode} service ended {app.status}")
                codes[mode] = service.code
            result = {"system": system.code, "org": consumer.code, "key": key, "services": codes,
                      "resource": res.code, "table": table_for(res).name, "key_field": res.key_fields[0],
                      "fields": all_fields}
    finally:
        db.dispose()
    return {**result, "seconds": time.perf_counter() - started}


def _resource_code(session: Any) -> str:
    from sqlalchemy import select

    from onceonly.catalog.models import Resource

    code = session.execute(select(Resource.code).where(Resource.name == RESOURCE)).scalars().first()
    if code is None:
        raise RuntimeError(f"resource {RESOURCE} not found")
    return str(code)


def build_home(home: Path, url: str, csv_path: Path, rows: int, log: Any) -> dict[str, Any]:
    """A fresh home and database with the persons and the exchange; each step in a fresh process."""
    home.mkdir(parents=True, exist_ok=True)
    setup = in_child(phase_setup, str(home), url)
    log(f"  resource published in {setup['seconds']:.1f} s; ingesting {rows:,} persons ...")
    report = in_child(phase_ingest, str(home), url, str(csv_path), None)
    if report["status"] != "committed" or report["inserted"] != rows:
        raise SystemExit(f"ingest: expected {rows:,} rows inserted, got {report}")
    log(f"  ingested in {report['seconds']:.1f} s ({rows / report['seconds']:,.0f} rows/s); exchange setup ...")
    world = in_child(phase_exchange, str(home), url)
    world["ingest_seconds"] = round(report["seconds"], 2)
    world["setup_seconds"] = round(setup["seconds"] + world.pop("seconds"), 2)
    return world


def checkpoint_sqlite(path: Path) -> None:
    """Move the WAL into the database file and empty it: Datasette's immutable mode (-i) reads
    the main file only."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: the WAL could not be checkpointed (a connection is still open)")
    finally:
        conn.close()


# --- load inputs ---------------------------------------------------------------------------------

def sample_rows(csv_path: Path, rows: int, picks: int, seed: int) -> list[dict[str, str]]:
    """`picks` rows drawn uniformly at random (with replacement) from the CSV's `rows` rows, in
    the order drawn; deterministic for a seed."""
    rng = random.Random(seed)
    order = [rng.randrange(rows) for _ in range(picks)]
    wanted = set(order)
    found: dict[int, dict[str, str]] = {}
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != HEADER:
            raise SystemExit(f"{csv_path}: unexpected header {header}")
        for i, row in enumerate(reader):
            if i in wanted:
                found[i] = dict(zip(header, row, strict=True))
    return [found[i] for i in order]


def write_keys(path: Path, sample: list[dict[str, str]], key_field: str) -> Path:
    path.write_text("".join(row[key_field] + "\n" for row in sample), encoding="ascii")
    return path


def verify_records(sample: list[dict[str, str]], seed: int) -> list[dict[str, str]]:
    """Claims as a caseworker sends them: key plus name, sex, birth date and mobile; about one in
    ten has a wrong name and one in ten a wrong mobile, so both outcomes are exercised."""
    rng = random.Random(seed)
    out = []
    for row in sample:
        claim = {f: row[f] for f in VERIFY_FIELDS}
        if rng.random() < 0.1:
            claim["name"] = claim["name"][:1] + "某某"
        if rng.random() < 0.1:
            claim["mobile"] = claim["mobile"][:7] + f"{(int(claim['mobile'][7:]) + 1) % 10000:04d}"
        out.append(claim)
    return out


def write_verify_bodies(path: Path, records: list[dict[str, str]], batch: int = VERIFY_BATCH) -> Path:
    """One JSON body per line: {"records": [...]} of `batch` records each."""
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, len(records) - batch + 1, batch):
            fh.write(json.dumps({"records": records[start:start + batch]}, ensure_ascii=False,
                                separators=(",", ":")) + "\n")
    return path
