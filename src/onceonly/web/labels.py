"""Display labels of the catalog's vocabularies and the staff roles, per language.

Chinese labels come from their owners (`catalog.vocab.LABELS`, `accounts.roles.ROLE_LABELS`);
the English ones live here (tests check both cover the same values)."""

from __future__ import annotations

from onceonly.accounts.roles import ROLE_LABELS
from onceonly.catalog.vocab import LABELS

EN_LABELS: dict[str, dict[str, str]] = {
    "kind": {"basic": "Basic catalogs", "theme": "Theme catalogs", "department": "Department catalogs"},
    "share_type": {"unconditional": "Shared unconditionally", "conditional": "Shared on conditions",
                   "none": "Not shared"},
    "open_type": {"open": "Open unconditionally", "conditional": "Open on conditions", "closed": "Not open"},
    "share_mode": {"verify": "Verification", "query": "Query", "api": "API access", "bulk": "Bulk copy"},
    "update_cycle": {"realtime": "Real time", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly",
                     "quarterly": "Quarterly", "yearly": "Yearly"},
    "field_type": {"string": "Text", "integer": "Integer", "number": "Number", "boolean": "Boolean",
                   "date": "Date", "datetime": "Date and time"},
    "sensitivity": {"public": "Public (may be opened)", "internal": "Internal (government sharing)",
                    "personal": "Personal information (PIPL art. 4)",
                    "sensitive": "Sensitive personal information (PIPL art. 28)"},
    "status": {"draft": "Draft", "published": "Published", "retired": "Retired"},
    "check": {"citizen_id": "Citizen ID (GB 11643)", "uscc": "Unified social credit code (GB 32100)",
              "mobile": "Mobile number"},
}

EN_ROLE_LABELS: dict[str, str] = {
    "platform_admin": "Platform administrator",
    "security_admin": "Security administrator",
    "auditor": "Security auditor",
    "dept_admin": "Department administrator",
    "steward": "Data steward",
    "reviewer": "Reviewer",
}


def label(lang: str, vocab: str, value: str | None) -> str:
    """The label of `value` in vocabulary `vocab`; unknown values show as themselves."""
    if value is None:
        return ""
    table = EN_LABELS if lang == "en" else LABELS
    return table.get(vocab, {}).get(value, value)


def role_label(lang: str, role: str) -> str:
    table = EN_ROLE_LABELS if lang == "en" else ROLE_LABELS
    return table.get(role, role)
