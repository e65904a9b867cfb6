"""The change feed (rides on a bulk grant): the resource's change log after a sequence, in
order — seq, op (I/U/D), the key and, for I and U, the row as it is now (granted fields,
masked). `next_since` is the cursor: the last sequence examined, passed back as `since`.

Rows are matched to the grant's row filter by their current values: an entry whose row lies
outside it is left out (so a page may hold fewer than `limit` entries while `has_more`), and a
row that moves out of the filter simply stops appearing — a full export gives the exact set."""

from __future__ import annotations

from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.exchange.calls import Answer, dumps
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.exchange.enforcement import Permit
from onceonly.exchange.projection import Params, key_shown, narrow, parse_fields, show, single
from onceonly.exchange.query import parse_limit
from onceonly.store import reading

MAX_SEQ = 2**63 - 1


def parse_since(raw: str | None) -> int:
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_SEQ:
        raise RequestInvalid("since: a change-log sequence, an integer of 0 or more (0: from the start)",
                             field="since")
    return int(raw)


def check_since(since: int, head: int, res: Resource) -> None:
    if since > head:
        raise RequestInvalid(f"since: {since} is beyond the last sequence {head} of the log of {res.code} "
                             f"v{res.version} (a cursor of another version?)", field="since")


def run(session: Session, permit: Permit, res: Resource, params: Params) -> Answer:
    since = parse_since(single(params, "since"))
    limit = parse_limit(single(params, "limit"))
    shown = narrow(permit, res, parse_fields(single(params, "fields")))
    unknown = [k for k, _ in params if k not in ("since", "limit", "fields")]
    if unknown:
        raise RequestInvalid(f"{unknown[0][:64]}: not a parameter of the change feed (since, limit, fields)",
                             field=unknown[0][:64])
    head = reading.log_head(session, res)
    check_since(since, head, res)
    entries, last = reading.changes_with_rows(session, res, since, max(1, min(limit, permit.remaining_today)),
                                              shown.fields, permit.row_filter)
    changes = [{"seq": e.seq, "op": e.op, "key": key_shown(permit, res, e.key),
                "record": show(shown, e.row) if e.row is not None else None} for e in entries]
    body = {"service": permit.service_code, "resource": res.code, "version": res.version, "since": since,
            "next_since": last, "last_seq": head, "has_more": last < head, "changes": changes}
    return Answer(dumps(body), len(changes), detail={"fields": list(shown.fields), "since": since, "next_since": last})
