"""Ingest over HTTP: upload (202, processed in the background), polling, history, quarantined
rows as JSON and CSV, resubmission, permissions and hostile uploads — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ingest_factories  # noqa: F401  (puts tests/api on sys.path for core_api)
import pytest
from core_api import Api, assert_problem, make_api
from ingest_factories import (
    PERSON_HEADER,
    csv_text,
    new_org,
    person_resource,
    person_row,
    person_rows,
    rejections_of,
    snapshot,
    stored,
)

from core_factories import CLI, spec
from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.service import create_resource
from onceonly.db import Database
from onceonly.ingest.service import mark_interrupted


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)  # also loads the standard code lists
    yield api
    api.client.close()


@pytest.fixture(scope="module")
def org(db: Database, api: Api) -> Organization:
    return new_org(db)


@pytest.fixture
def res(db: Database, org: Organization) -> Resource:
    return person_resource(db, org)


def steward(api: Api, org: Organization) -> dict[str, str]:
    return api.auth("steward", org.code)


def upload(api: Api, res: Resource, content: bytes | str, headers: dict[str, str], name: str = "人口.csv",
           **form: Any) -> httpx.Response:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return api.client.post(f"/api/v1/resources/{res.code}/batches", headers=headers,
                           files={"file": (name, data, "text/csv")}, data={k: str(v) for k, v in form.items()})


def poll(api: Api, batch_id: int, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        r = api.client.get(f"/api/v1/batches/{batch_id}", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] != "running" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def accepted(api: Api, res: Resource, content: bytes | str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
    r = upload(api, res, content, headers, **kw)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running" and body["resource"] == res.code
    return poll(api, body["id"], headers)


def test_upload_poll_and_history(api: Api, db: Database, org: Organization, res: Resource) -> None:
    h = steward(api, org)
    done = accepted(api, res, csv_text([*PERSON_HEADER, "备注"], [[*r, "x"] for r in person_rows(6)]), h)
    assert done["status"] == "committed", done["error"]
    assert (done["read"], done["inserted"], done["updated"], done["rejected"]) == (6, 6, 0, 0)
    assert done["unmapped"] == ["备注"] and done["file_name"] == "人口.csv" and done["format"] == "csv"
    assert done["username"].startswith("steward") and done["progress"] is None
    assert snapshot(db, res.id).rows == 6
    again = accepted(api, res, csv_text(PERSON_HEADER, person_rows(6)), h, mode="upsert")
    assert again["unchanged"] == 6
    for ref in (res.code, res.name, str(res.id)):
        listed = api.client.get(f"/api/v1/resources/{ref}/batches", headers=h)
        assert listed.status_code == 200, listed.text
        assert [b["id"] for b in listed.json()][:2] == [again["id"], done["id"]]
    # The upload was processed from a scratch folder that is gone afterwards.
    assert list((db.settings.home / "uploads").iterdir()) == []


def test_rejections_as_json_and_csv_then_resubmit(api: Api, db: Database, org: Organization, res: Resource) -> None:
    h = steward(api, org)
    rows = [person_row(0), person_row(1, 手机号码="12"), person_row(2, 性别="7"), person_row(3),
            person_row(4, 姓名="")]
    done = accepted(api, res, csv_text(PERSON_HEADER, rows), h)
    assert (done["inserted"], done["rejected"]) == (2, 3)
    assert {(r["row"], r["field"], r["rule"]) for r in done["rejections"]} == {
        (3, "mobile", "mobile.format"), (4, "sex", "code_list.unknown"), (6, "name", "required")}
    page = api.client.get(f"/api/v1/batches/{done['id']}/rejections", headers=h, params={"limit": 2}).json()
    assert page["total"] == 3 and [i["row"] for i in page["items"]] == [3, 4]
    first = page["items"][0]
    assert first["raw"]["手机号码"] == "12" and first["resolved_by"] is None
    assert first["problems"][0].keys() == {"field", "rule", "zh", "en"}
    rest = api.client.get(f"/api/v1/batches/{done['id']}/rejections", headers=h, params={"offset": 2}).json()
    assert [i["row"] for i in rest["items"]] == [6]

    got = api.client.get(f"/api/v1/batches/{done['id']}/rejections.csv", headers=h)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert f"batch-{done['id']}-rejected.csv" in got.headers["content-disposition"]
    assert got.content.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert table[0] == ["_row", "_problems", *PERSON_HEADER]
    fixed = {"3": ("手机号码", "13900000001"), "4": ("性别", "1"), "6": ("姓名", "人4")}
    for line in table[1:]:
        col, value = fixed[line[0]]
        line[table[0].index(col)] = value
    buf = io.StringIO()
    csv.writer(buf).writerows(table)
    resent = accepted(api, res, "\ufeff" + buf.getvalue(), h, name="rejected.csv", resubmit_of=done["id"])
    assert (resent["inserted"], resent["rejected"], resent["resubmit_of"]) == (3, 0, done["id"])
    assert {r.row_number: r.resolved_by for r in rejections_of(db, done["id"])} == {3: resent["id"], 4: resent["id"],
                                                                                   6: resent["id"]}
    after = api.client.get(f"/api/v1/batches/{done['id']}/rejections", headers=h).json()
    assert {i["resolved_by"] for i in after["items"]} == {resent["id"]}
    assert stored(db, res.id, person_row(4)[0])["name"] == "人4"  # type: ignore[index]
    # Resubmitting against a batch of another resource is refused up front.
    other = person_resource(db, org)
    assert_problem(upload(api, other, buf.getvalue(), h, resubmit_of=done["id"]), 404, "resubmit_of")


def test_refused_files_are_recorded_as_failed(api: Api, db: Database, org: Organization, res: Resource) -> None:
    h = steward(api, org)
    accepted(api, res, csv_text(PERSON_HEADER, person_rows(10)), h)
    before = snapshot(db, res.id)
    no_name = csv_text([h_ for h_ in PERSON_HEADER if h_ != "姓名"], [r[:1] + r[2:] for r in person_rows(3)])
    failed = accepted(api, res, no_name, h)
    assert failed["status"] == "failed" and "name" in failed["error"]
    replace = accepted(api, res, csv_text(PERSON_HEADER, person_rows(2)), h, mode="replace")
    assert replace["status"] == "failed" and "--force" in replace["error"]
    binary = accepted(api, res, bytes(range(256)) * 10, h, name="x.csv")
    assert binary["status"] == "failed" and binary["error"]
    assert snapshot(db, res.id) == before
    forced = accepted(api, res, csv_text(PERSON_HEADER, person_rows(2)), h, mode="replace", force="true")
    assert (forced["status"], forced["deleted"]) == ("committed", 8)


def test_invalid_options_are_422(api: Api, org: Organization, res: Resource) -> None:
    h = steward(api, org)
    body = csv_text(PERSON_HEADER, person_rows(1))
    assert_problem(upload(api, res, body, h, mapping="{not json"), 422, "mapping")
    assert upload(api, res, body, h, mode="merge").status_code == 422
    r = upload(api, res, body, h, mapping='{"公民身份号码": "citizen_id", "XM": "nope"}')
    assert r.status_code == 202  # an explicit entry naming no column is harmless …
    bad = upload(api, res, csv_text(["SFZH", "XM"], [["1", "2"]]), h, mapping='{"XM": "nope"}')
    assert poll(api, bad.json()["id"], h)["error"]  # … one naming no field fails the batch


def test_format_field(api: Api, org: Organization, res: Resource) -> None:
    h = steward(api, org)
    body = csv_text(PERSON_HEADER, person_rows(2))
    failed = accepted(api, res, body, h, name="export.dat")
    assert failed["status"] == "failed" and "--format" in failed["error"]
    done = accepted(api, res, body, h, name="export.dat", format="csv")
    assert (done["status"], done["format"], done["inserted"]) == ("committed", "csv", 2)


def test_permissions(api: Api, db: Database, org: Organization, res: Resource) -> None:
    own = steward(api, org)
    foreign = api.auth("steward", new_org(db).code)
    auditor = api.auth("auditor")
    body = csv_text(PERSON_HEADER, person_rows(3))
    before = snapshot(db, res.id)
    for h in (foreign, auditor):
        assert_problem(upload(api, res, body, h), 403)
    assert upload(api, res, body, {}).status_code == 401
    assert snapshot(db, res.id) == before
    assert api.client.get(f"/api/v1/resources/{res.code}/batches", headers=own).json() == []
    assert list((db.settings.home / "uploads").iterdir()) == [], "refused uploads leave no file"

    done = accepted(api, res, body, own)
    batch = done["id"]
    for path in (f"/api/v1/batches/{batch}", f"/api/v1/batches/{batch}/rejections",
                 f"/api/v1/batches/{batch}/rejections.csv", f"/api/v1/resources/{res.code}/batches"):
        assert api.client.get(path, headers=auditor).status_code == 200, path
        assert api.client.get(path, headers=own).status_code == 200, path
        assert_problem(api.client.get(path, headers=foreign), 403)
        assert api.client.get(path).status_code == 401
    assert_problem(api.client.get("/api/v1/batches/99999999", headers=own), 404, "batch")


def test_unknown_and_unpublished_resources(api: Api, db: Database, org: Organization) -> None:
    h = api.auth()
    body = csv_text(PERSON_HEADER, person_rows(1))
    r = api.client.post("/api/v1/resources/no_such_thing/batches", headers=h,
                        files={"file": ("a.csv", body.encode(), "text/csv")})
    assert_problem(r, 404, "resource")
    assert_problem(api.client.get("/api/v1/resources/no_such_thing/batches", headers=h), 404)
    with db.session(write=True) as s:
        draft = create_resource(s, CLI, spec(org))
    assert_problem(upload(api, draft, body, h), 409, "resource")


HOSTILE = ["../../evil.csv", "..\\..\\evil.csv", "/etc/evil.csv", "a/../../../evil.csv", "..", ".", "",
           "C:\\Users\\x\\evil.csv", "e\x00vil.csv", "长" * 200 + ".csv", "-rf .csv", "evil.csv/"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_names_are_neutralized(api: Api, db: Database, org: Organization, res: Resource,
                                            name: str) -> None:
    h = steward(api, org)
    home = db.settings.home
    outside = {p for p in home.parent.rglob("evil*")}
    r = upload(api, res, csv_text(PERSON_HEADER, person_rows(2)), h, name=name)
    assert r.status_code in (202, 422), r.text
    if r.status_code == 202:
        body = poll(api, r.json()["id"], h)
        stored_name = body["file_name"]
        assert "/" not in stored_name and "\\" not in stored_name and stored_name not in ("..", ".")
        assert "\x00" not in stored_name and len(stored_name.encode()) <= 255
        assert body["status"] in ("committed", "failed")
    assert {p for p in home.parent.rglob("evil*")} == outside, "nothing written outside the upload folder"
    assert not Path("/etc/evil.csv").exists()
    assert list((home / "uploads").iterdir()) == []


def test_a_running_batch_shows_live_progress_and_is_not_marked_interrupted(api: Api, db: Database,
                                                                          org: Organization, res: Resource) -> None:
    """The API's batches run in the server process: mark_interrupted must leave them alone."""
    from onceonly.ingest import service
    from onceonly.ingest.models import Batch
    from onceonly.ingest.schemas import IngestOptions

    with db.session(write=True) as s:
        batch_id = service.start_batch(s, CLI, res.code, "x.csv", 1, IngestOptions())
    service._set_progress(batch_id, read=42, status="running")
    try:
        mark_interrupted(db)
        body = api.client.get(f"/api/v1/batches/{batch_id}", headers=steward(api, org)).json()
        assert body["status"] == "running" and body["progress"]["read"] == 42
    finally:
        with service._progress_lock:
            service._progress.pop(batch_id, None)
        with db.session(write=True) as s:
            s.get(Batch, batch_id).status = "failed"  # type: ignore[union-attr]


def test_safe_file_name() -> None:
    from onceonly.ingest.uploads import MAX_NAME_BYTES, safe_file_name

    assert safe_file_name("../../x.csv") == "x.csv"
    assert safe_file_name("C:\\Users\\张三\\人口.xlsx") == "人口.xlsx"
    assert safe_file_name("x.csv/") == "x.csv"
    assert safe_file_name("a\x00b\r\n.csv") == "ab.csv"
    for name in ("..", ".", "", None, "/", "..\\.."):
        assert safe_file_name(name) == "upload"
    long = safe_file_name("长" * 300 + ".jsonl")
    assert long.endswith("长.jsonl") and len(long.encode()) <= MAX_NAME_BYTES


def test_uploads_above_the_limit_are_refused_before_they_land(db: Database, org: Organization, res: Resource) -> None:
    """ONCEONLY_INGEST_MAX_UPLOAD_MB: a larger upload is 413 naming the limit, whether its size
    is declared or only counted as it streams; no batch is started and nothing stays on disk.
    A file under the limit goes through as usual; the web page gets the same refusal as a page."""
    from fastapi.testclient import TestClient

    from onceonly.app import create_app

    client = TestClient(create_app(db.settings.model_copy(update={"ingest_max_upload_mb": 1}), db))
    headers = api_auth = make_api(db).auth("steward", org.code)
    uploads_dir = db.settings.home / "uploads"
    before = set(uploads_dir.iterdir()) if uploads_dir.exists() else set()
    big = csv_text(PERSON_HEADER, person_rows(40)).encode() + b"#" * (2 << 20)
    url = f"/api/v1/resources/{res.code}/batches"

    declared = client.post(url, headers=headers, files={"file": ("big.csv", big, "text/csv")})
    body = assert_problem(declared, 413, "file")
    assert "1 MB" in body["detail"]

    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        yield b"Content-Type: text/csv\r\n\r\n"
        for i in range(0, len(big), 64 << 10):
            yield big[i:i + (64 << 10)]
        yield b"\r\n--xyz--\r\n"

    streamed = client.post(url, headers={**headers, "Content-Type": "multipart/form-data; boundary=xyz"},
                           content=chunks())
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert_problem(streamed, 413, "file")

    page = client.post(f"/catalog/resources/{res.code}/upload", files={"file": ("big.csv", big, "text/csv")})
    assert page.status_code == 413 and page.headers["content-type"].startswith("text/html")
    assert "文件过大" in page.text and "1 MB" in page.text

    assert client.get(f"/api/v1/resources/{res.code}/batches", headers=api_auth).json() == []
    after = set(uploads_dir.iterdir()) if uploads_dir.exists() else set()
    assert after == before, "no upload left on disk"
    small = client.post(url, headers=headers, files={"file": ("ok.csv", csv_text(PERSON_HEADER, person_rows(3)),
                                                                     "text/csv")})
    assert small.status_code == 202, small.text
    client.close()
