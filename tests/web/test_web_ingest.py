"""Loading data on the web: the upload form, the batch page (progress, then the report), the
rejected rows as CSV and their resubmission, the batches of a resource, and who may do what."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webseed import Seed, csrf_of, sign_in

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import create_user
from onceonly.catalog import orgs
from onceonly.catalog import service as catalog
from onceonly.catalog.schemas import FieldSpec, ResourceSpec
from onceonly.ingest import repository as ingest_repo
from onceonly.ingest import service as ingest
from onceonly.ingest.schemas import IngestOptions
from onceonly.ingest.uploads import safe_file_name
from onceonly.kit.identifiers import make_citizen_id
from onceonly.store import service as store
from onceonly.web.ingest_pages import human_size

HEADER = "citizen_id,name,sex\n"


@dataclass(frozen=True)
class People:
    steward: tuple[str, str]
    other_steward: tuple[str, str]
    auditor: tuple[str, str]
    reviewer: tuple[str, str]
    draft_id: int
    scratch_id: int  # a published resource of the seed's department that replace tests may empty


@pytest.fixture(scope="module")
def people(seed: Seed) -> People:
    cli = Actor.cli()
    with seed.db.session(write=True) as s:
        org = orgs.get_org(s, seed.org_code).id
        org2 = orgs.get_org(s, seed.org2_code).id
        _, p1 = create_user(s, cli, "steward1", "steward", org)
        _, p2 = create_user(s, cli, "steward2", "steward", org2)
        _, p3 = create_user(s, cli, "auditor1", "auditor", None)
        _, p4 = create_user(s, cli, "reviewer1", "reviewer", org)
        fields = [FieldSpec(name="citizen_id", title="公民身份号码", check="citizen_id", length=18),
                  FieldSpec(name="name", title="姓名", length=50)]
        draft = catalog.create_resource(s, cli, ResourceSpec(
            name="draft_people", title="草稿资源", provider=seed.org_code, catalog="101", share_type="unconditional",
            key_fields=["citizen_id"], fields=fields))
        scratch = catalog.create_resource(s, cli, ResourceSpec(
            name="scratch_people", title="替换测试资源", provider=seed.org_code, catalog="101",
            share_type="unconditional", key_fields=["citizen_id"], fields=fields))
        catalog.publish_resource(s, cli, scratch)
        store.upsert_rows(s, scratch, [{"citizen_id": cid(i), "name": f"甲{i}"} for i in range(10)])
        s.flush()
        return People(("steward1", p1), ("steward2", p2), ("auditor1", p3), ("reviewer1", p4), draft.id, scratch.id)


def cid(i: int) -> str:
    return make_citizen_id("341802", date(1990, 1, 1 + i % 28), 100 + i, i % 2 == 0)


def bad_cid(i: int) -> str:
    good = cid(i)
    return good[:-1] + ("0" if good[-1] != "0" else "1")


def as_user(app: FastAPI, who: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        response = sign_in(c, *who)
        assert response.status_code == 303, response.text
        yield c


@pytest.fixture
def steward(app: FastAPI, people: People) -> Iterator[TestClient]:
    yield from as_user(app, people.steward)


@pytest.fixture
def other_steward(app: FastAPI, people: People) -> Iterator[TestClient]:
    yield from as_user(app, people.other_steward)


@pytest.fixture
def auditor(app: FastAPI, people: People) -> Iterator[TestClient]:
    yield from as_user(app, people.auditor)


@pytest.fixture
def reviewer(app: FastAPI, people: People) -> Iterator[TestClient]:
    yield from as_user(app, people.reviewer)


def upload(client: TestClient, resource: int | str, content: bytes, name: str = "people.csv",
           **form: str) -> httpx.Response:
    token = csrf_of(client.get("/catalog").text)
    data = {"csrf_token": token, "mode": "upsert", "encoding": "", "sheet": "", **form}
    return client.post(f"/catalog/resources/{resource}/upload", data=data,
                       files={"file": (name, content, "text/csv")})


def batch_id_of(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/batches/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def block(html: str, name: str) -> str:
    """The element with data-testid=name, up to its end tag (good enough for these flat blocks)."""
    assert f'data-testid="{name}"' in html, f"no {name} in page"
    return html.split(f'data-testid="{name}"', 1)[1].split("</section>", 1)[0].split("</div>\n", 1)[0]


def count(html: str, key: str) -> str:
    block = html.split(f'data-testid="count-{key}"', 1)[1]
    return re.search(r'class="tile-value">([^<]*)<', block).group(1)  # type: ignore[union-attr]


# --- the resource page and its batches --------------------------------------------------------

def test_the_resource_page_loads_the_batches_panel(steward: TestClient, seed: Seed) -> None:
    page = steward.get(f"/catalog/resources/{seed.resource_id}")
    assert f'hx-get="/catalog/resources/{seed.resource_id}/batches"' in page.text
    panel = steward.get(f"/catalog/resources/{seed.resource_id}/batches", headers={"HX-Request": "true"})
    assert panel.status_code == 200
    assert "<html" not in panel.text and 'data-testid="ingest-panel"' in panel.text
    assert "批次记录" in panel.text
    assert f'href="/catalog/resources/{seed.resource_id}/upload"' in panel.text and "上传数据" in panel.text
    full = steward.get(f"/catalog/resources/{seed.resource_code}/batches")
    assert full.status_code == 200 and "<html" in full.text and "上传数据" in full.text


def test_those_who_may_not_load_see_no_upload_action(auditor: TestClient, reviewer: TestClient,
                                                     other_steward: TestClient, seed: Seed) -> None:
    url = f"/catalog/resources/{seed.resource_id}/batches"
    panel = auditor.get(url, headers={"HX-Request": "true"})  # auditors see batches, cannot load
    assert 'data-testid="ingest-panel"' in panel.text and "upload-link" not in panel.text
    for client in (reviewer, other_steward):
        assert client.get(url, headers={"HX-Request": "true"}).text == ""  # nothing to show
        assert client.get(url).status_code == 403


def test_a_draft_resource_shows_no_upload_action(steward: TestClient, people: People) -> None:
    panel = steward.get(f"/catalog/resources/{people.draft_id}/batches", headers={"HX-Request": "true"})
    assert "upload-link" not in panel.text and "只有已发布的资源可以导入数据" in panel.text


# --- the upload form --------------------------------------------------------------------------

def test_upload_form(steward: TestClient, seed: Seed) -> None:
    page = steward.get(f"/catalog/resources/{seed.resource_id}/upload")
    assert page.status_code == 200
    form = page.text.split('data-testid="upload-form"', 1)[1].split("</form>", 1)[0]
    assert 'enctype="multipart/form-data"' in page.text and 'name="csrf_token"' in form
    for name in ('name="file"', 'name="mode" value="upsert"', 'name="mode" value="replace"', 'name="force"',
                 'name="sheet"', 'name="encoding"', 'value="gb18030"', 'value="utf-8"'):
        assert name in form, name
    assert "resubmit_of" not in form
    assert "全量替换" in page.text and "20%" in page.text  # replace is explained with its threshold
    assert "公民身份号码" in page.text  # the expected columns


def test_the_upload_form_by_code_and_unknown_resources(steward: TestClient, seed: Seed) -> None:
    assert steward.get(f"/catalog/resources/{seed.resource_code}/upload").status_code == 200
    assert steward.get("/catalog/resources/999999/upload").status_code == 404
    assert steward.get("/catalog/resources/hukou/upload?resubmit_of=999999").status_code == 404


def test_signed_out_the_upload_form_asks_to_sign_in(client: TestClient, seed: Seed) -> None:
    response = client.get(f"/catalog/resources/{seed.resource_id}/upload")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


# --- a batch end to end -----------------------------------------------------------------------

def test_upload_a_csv_with_a_bad_row_and_read_the_report(steward: TestClient, seed: Seed) -> None:
    content = (HEADER + f"{cid(1)},张三,1\n{bad_cid(2)},李四,2\n{cid(3)},王五,2\n").encode()
    response = upload(steward, seed.resource_id, content, "人口.csv")
    batch = batch_id_of(response)
    page = steward.get(f"/batches/{batch}")  # the background task ran before TestClient returned
    assert page.status_code == 200
    html = page.text
    assert 'data-status="committed"' in html and "hx-trigger" not in html.split('data-testid="batch-body"', 1)[1]
    assert {k: count(html, k) for k in ("read", "inserted", "updated", "unchanged", "deleted", "rejected")} == {
        "read": "3", "inserted": "2", "updated": "0", "unchanged": "0", "deleted": "0", "rejected": "1"}
    assert "批次已提交；1 行被拒绝" in html
    file_block = block(html, "batch-file")
    assert "人口.csv" in file_block and hashlib.sha256(content).hexdigest() in file_block
    assert "CSV" in file_block and "utf-8" in file_block and "文件格式" in file_block
    assert "steward1" in block(html, "batch-run") and "秒" in block(html, "batch-run")
    assert re.search(r"<code>citizen_id.check_digit</code></td><td class=\"num\">1</td>", block(html, "rule-counts"))
    rejections = html.split('data-testid="rejections-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'<td class="num">3</td>\s*<td><code>citizen_id</code></td>\s*'
                     r'<td><code>citizen_id.check_digit</code></td>\s*<td>身份证号校验码错误', rejections)
    assert f'href="/batches/{batch}/rejections.csv"' in html
    assert f'href="/catalog/resources/{seed.resource_id}/upload?resubmit_of={batch}"' in html
    assert "重新提交更正后的文件" in html

    # the batches of the resource list it
    panel = steward.get(f"/catalog/resources/{seed.resource_id}/batches", headers={"HX-Request": "true"}).text
    assert f'href="/batches/{batch}"' in panel and "人口.csv" in panel

    # English: the same report with the messages in English
    steward.cookies.set("lang", "en")
    english = steward.get(f"/batches/{batch}").text
    assert "Rejected rows" in english and "Resubmit corrected rows" in english and "Inserted" in english
    rejected_en = english.split('data-testid="rejections-table"', 1)[1].split("</table>", 1)[0]
    assert not re.search(r"[\u4e00-\u9fff]", rejected_en), rejected_en
    assert "the check digit (ISO 7064 MOD 11-2) is wrong" in rejected_en


def test_download_the_rejections_and_resubmit_them_corrected(steward: TestClient, seed: Seed) -> None:
    content = (HEADER + f"{bad_cid(5)},赵六,1\n{cid(6)},钱七,2\n").encode()
    batch = batch_id_of(upload(steward, seed.resource_id, content))

    download = steward.get(f"/batches/{batch}/rejections.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert f'filename="batch-{batch}-rejected.csv"' in download.headers["content-disposition"]
    text = download.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["_row", "_problems", "citizen_id", "name", "sex"]
    assert len(rows) == 2 and rows[1][0] == "2" and rows[1][2] == bad_cid(5) and rows[1][3] == "赵六"

    form = steward.get(f"/catalog/resources/{seed.resource_id}/upload?resubmit_of={batch}")
    assert f'name="resubmit_of" value="{batch}"' in form.text and 'data-testid="resubmit-note"' in form.text

    rows[1][2] = cid(5)  # corrected
    fixed = io.StringIO()
    csv.writer(fixed).writerows(rows)
    again = batch_id_of(upload(steward, seed.resource_id, fixed.getvalue().encode("utf-8-sig"), "fixed.csv",
                               resubmit_of=str(batch)))
    html = steward.get(f"/batches/{again}").text
    assert count(html, "inserted") == "1" and count(html, "rejected") == "0"
    assert f'href="/batches/{batch}"' in html  # "corrects batch #…"
    with seed.db.session() as s:
        rejected, _ = ingest_repo.rejections(s, batch)
        assert [r.resolved_by for r in rejected] == [again]


def test_a_refused_file_shows_its_reason(steward: TestClient, seed: Seed) -> None:
    batch = batch_id_of(upload(steward, seed.resource_id, "编号,地址\n1,某路\n".encode(), "wrong.csv"))
    html = steward.get(f"/batches/{batch}").text
    assert 'data-status="failed"' in html and "批次失败，未导入任何数据" in html
    message = block(html, "batch-error-message")
    assert "citizen_id" in message  # the missing required column is named
    assert "rejections-table" not in html and "hx-trigger" not in html


def test_replace_is_refused_above_the_threshold_unless_forced(steward: TestClient, people: People) -> None:
    one = (HEADER.replace(",sex", "") + f"{cid(0)},甲0\n").encode()
    refused = batch_id_of(upload(steward, people.scratch_id, one, mode="replace"))
    html = steward.get(f"/batches/{refused}").text
    assert 'data-status="failed"' in html and "replace would delete 9 of 10 rows" in html
    forced = batch_id_of(upload(steward, people.scratch_id, one, mode="replace", force="1"))
    html = steward.get(f"/batches/{forced}").text
    assert 'data-status="committed"' in html and count(html, "deleted") == "9" and count(html, "unchanged") == "1"
    assert "全量替换" in block(html, "batch-file")


def test_force_counts_only_with_replace(steward: TestClient, seed: Seed) -> None:
    batch = batch_id_of(upload(steward, seed.resource_id, (HEADER + f"{cid(9)},孙八,1\n").encode(), force="1"))
    with seed.db.session() as s:
        row = ingest_repo.batch(s, batch)
        assert row is not None and row.mode == "upsert" and row.force is False


def test_a_gb18030_file_with_an_explicit_encoding(steward: TestClient, seed: Seed) -> None:
    content = ("公民身份号码,姓名,性别\n" + f"{cid(11)},欧阳修,1\n").encode("gb18030")
    batch = batch_id_of(upload(steward, seed.resource_id, content, "gbk.csv", encoding="gb18030"))
    html = steward.get(f"/batches/{batch}").text
    assert count(html, "inserted") == "1" and "gb18030" in block(html, "batch-file")


def test_unmapped_columns_are_reported(steward: TestClient, seed: Seed) -> None:
    content = ("citizen_id,name,sex,备注\n" + f"{cid(12)},周九,1,无\n").encode()
    html = steward.get(f"/batches/{batch_id_of(upload(steward, seed.resource_id, content))}").text
    assert "未对应的列" in html and '<span class="chip">备注</span>' in block(html, "unmapped")


# --- progress while running -------------------------------------------------------------------

def test_a_running_batch_is_polled_until_it_finishes(steward: TestClient, seed: Seed,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with seed.db.session(write=True) as s:
        actor = Actor(user_id=None, username="steward1", role="platform_admin")
        batch = ingest.start_batch(s, actor, seed.resource_id, "big.csv", 10_000, IngestOptions())
    live: dict[str, Any] = {"read": 5000, "bytes": 10_000, "position": 4000, "status": "running"}
    monkeypatch.setattr(ingest, "live_progress", lambda batch_id: dict(live) if batch_id == batch else None)

    page = steward.get(f"/batches/{batch}")
    assert f'hx-get="/batches/{batch}" hx-trigger="every 1s"' in page.text and "<html" in page.text
    fragment = steward.get(f"/batches/{batch}", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and 'hx-trigger="every 1s"' in fragment.text
    assert "已读取 5,000 行" in fragment.text and '<progress class="progress" value="40" max="100"' in fragment.text
    assert "已处理文件的 40%" in fragment.text

    for unknown in (0, None):  # the reader cannot tell its position in the file: an indeterminate bar
        live["position"] = unknown
        fragment = steward.get(f"/batches/{batch}", headers={"HX-Request": "true"})
        assert '<progress class="progress" aria-labelledby' in fragment.text and "已读取 5,000 行" in fragment.text
        assert "已处理文件的" not in fragment.text

    with seed.db.session() as s:
        row = ingest_repo.batch(s, batch)
        assert row is not None
        row.status, row.error = "interrupted", "the process ended before the batch committed"
    final = steward.get(f"/batches/{batch}", headers={"HX-Request": "true"})
    assert "hx-trigger" not in final.text and 'data-status="interrupted"' in final.text
    assert "批次在提交前中断" in final.text and "the process ended" in final.text


# --- refusals ---------------------------------------------------------------------------------

def test_an_upload_without_the_csrf_token_is_refused(steward: TestClient, seed: Seed) -> None:
    with seed.db.session() as s:
        before = len(ingest_repo.batches_of(s, [seed.resource_id], limit=1000))
    response = steward.post(f"/catalog/resources/{seed.resource_id}/upload", data={"mode": "upsert"},
                            files={"file": ("a.csv", (HEADER + f"{cid(20)},甲,1\n").encode(), "text/csv")})
    assert response.status_code == 403 and "表单未被受理" in response.text
    forged = steward.post(f"/catalog/resources/{seed.resource_id}/upload",
                          data={"mode": "upsert", "csrf_token": "forged"},
                          files={"file": ("a.csv", (HEADER + f"{cid(20)},甲,1\n").encode(), "text/csv")})
    assert forged.status_code == 403
    with seed.db.session() as s:
        assert len(ingest_repo.batches_of(s, [seed.resource_id], limit=1000)) == before


def test_a_steward_of_another_department_is_refused(other_steward: TestClient, steward: TestClient,
                                                   seed: Seed) -> None:
    assert other_steward.get(f"/catalog/resources/{seed.resource_id}/upload").status_code == 403
    response = upload(other_steward, seed.resource_id, (HEADER + f"{cid(21)},甲,1\n").encode())
    assert response.status_code == 403 and "无权访问" in response.text
    batch = batch_id_of(upload(steward, seed.resource_id, (HEADER + f"{bad_cid(22)},乙,1\n").encode()))
    assert other_steward.get(f"/batches/{batch}").status_code == 403
    assert other_steward.get(f"/batches/{batch}/rejections.csv").status_code == 403


def test_auditors_read_batches_but_cannot_load(auditor: TestClient, steward: TestClient, seed: Seed) -> None:
    batch = batch_id_of(upload(steward, seed.resource_id, (HEADER + f"{bad_cid(23)},丙,1\n").encode()))
    page = auditor.get(f"/batches/{batch}")
    assert page.status_code == 200 and "download-rejections" in page.text and "resubmit-link" not in page.text
    assert auditor.get(f"/batches/{batch}/rejections.csv").status_code == 200
    assert auditor.get(f"/catalog/resources/{seed.resource_id}/upload").status_code == 403


def test_a_draft_resource_cannot_be_uploaded_to(steward: TestClient, people: People, seed: Seed) -> None:
    page = steward.get(f"/catalog/resources/{people.draft_id}/upload")
    assert page.status_code == 409 and "only a published resource takes data" in page.text
    response = upload(steward, people.draft_id, (HEADER.replace(",sex", "") + f"{cid(24)},甲\n").encode())
    assert response.status_code == 409
    with seed.db.session() as s:
        assert not ingest_repo.batches_of(s, [people.draft_id])


@pytest.mark.parametrize(("name", "form", "message"), [
    ("", {}, "请选择要上传的文件"),
    ("people.exe", {}, "无法导入此类文件"),
    ("people.csv", {"mode": "delete"}, "请选择导入方式"),
    ("people.csv", {"encoding": "latin-1"}, "请从列出的字符编码中选择"),
    ("people.csv", {"resubmit_of": "abc"}, "要更正的批次须以批次号指明"),
    ("people.csv", {"resubmit_of": "999999"}, "batch 999999 of resource"),
])
def test_form_errors_are_shown_on_the_form(steward: TestClient, seed: Seed, name: str, form: dict[str, str],
                                           message: str) -> None:
    response = upload(steward, seed.resource_id, (HEADER + f"{cid(25)},甲,1\n").encode(), name, **form)
    assert response.status_code in (404, 422), response.text
    assert 'data-testid="upload-error"' in response.text and message in response.text
    assert 'data-testid="upload-form"' in response.text


def test_unknown_batches(steward: TestClient) -> None:
    assert steward.get("/batches/999999").status_code == 404
    assert steward.get("/batches/999999/rejections.csv").status_code == 404
    assert steward.get("/batches/abc").status_code == 404


# --- helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kept"), [
    ("人口.csv", "人口.csv"), ("C:\\Users\\me\\data.xlsx", "data.xlsx"), ("../../etc/passwd.csv", "passwd.csv"),
    ("..", "upload"), ("", "upload"), (None, "upload"), ("a\x00b.csv", "ab.csv"),
    ("x" * 300 + ".csv", "x" * 196 + ".csv"),
])
def test_safe_file_name(given: str | None, kept: str) -> None:
    assert safe_file_name(given) == kept


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024 * 1024)] == ["0 B", "1023 B", "1.5 KB", "5.0 MB"]
