"""Example calls shown on a service's page: one curl command per call the service's mode
answers, with placeholders for the key and the values — never a real key."""

from __future__ import annotations

import json
from dataclasses import dataclass

from onceonly.exchange.schemas import ServiceOut

KEY_PLACEHOLDER = "$ONCEONLY_API_KEY"
CALLS_OF_MODE: dict[str, tuple[str, ...]] = {
    "verify": ("verify",), "query": ("records",), "api": ("record",), "bulk": ("export", "changes"),
}


@dataclass(frozen=True)
class Example:
    call: str  # verify, records, record, export, changes
    method: str
    path: str
    curl: str


def _placeholder(svc: ServiceOut, name: str) -> str:
    title = next((f.title for f in svc.fields if f.name == name), name)
    return f"<{title}>"


def _quote(text: str) -> str:
    """Single-quoted for a POSIX shell."""
    return "'" + text.replace("'", "'\\''") + "'"


def examples(base: str, svc: ServiceOut, key_fields: list[str], query_fields: list[str]) -> list[Example]:
    base = base.rstrip("/")
    root = f"{base}/api/v1/exchange/{svc.code}"
    auth = f'-H "Authorization: Bearer {KEY_PLACEHOLDER}" \\\n  -H "X-OnceOnly-Purpose: <用途或案件编号>"'
    names = [f.name for f in svc.fields]
    keys = [k for k in key_fields if k in names] or names[:1]
    out = []
    for call in CALLS_OF_MODE.get(svc.mode, ()):
        if call == "verify":
            claimed = {k: _placeholder(svc, k) for k in [*keys, *[n for n in names if n not in keys][:1]]}
            body = json.dumps({"records": [claimed]}, ensure_ascii=False)
            path = f"/api/v1/exchange/{svc.code}/verify"
            curl = (f"curl -X POST {_quote(root + '/verify')} \\\n  {auth} \\\n"
                    f"  -H \"Content-Type: application/json\" \\\n  -d {_quote(body)}")
        elif call == "records":
            where = next((q for q in query_fields if q in names), keys[0])
            path = f"/api/v1/exchange/{svc.code}/records"
            curl = (f"curl -G {_quote(root + '/records')} \\\n  {auth} \\\n"
                    f"  --data-urlencode {_quote(f'{where}={_placeholder(svc, where)}')} \\\n"
                    f"  --data-urlencode {_quote('fields=' + ','.join(names[:3]))} \\\n  --data-urlencode 'limit=100'")
        elif call == "record":
            path = f"/api/v1/exchange/{svc.code}/records/{{key}}"
            curl = f"curl {_quote(root + '/records/' + _placeholder(svc, keys[0]))} \\\n  {auth}"
        elif call == "export":
            path = f"/api/v1/exchange/{svc.code}/export"
            curl = f"curl -o {svc.code}.csv {_quote(root + '/export?format=csv')} \\\n  {auth}"
        else:
            path = f"/api/v1/exchange/{svc.code}/changes"
            curl = f"curl {_quote(root + '/changes?since=0&limit=1000')} \\\n  {auth}"
        out.append(Example(call=call, method="POST" if call == "verify" else "GET", path=path, curl=curl))
    return out
