"""Roles and what each may do. 三员分立: platform admin, security admin and auditor are
separate; no role may alter the audit trail. Department roles are scoped to their org."""

from __future__ import annotations

from typing import Literal

Role = Literal["platform_admin", "security_admin", "auditor", "dept_admin", "steward", "reviewer"]
ROLES: tuple[Role, ...] = ("platform_admin", "security_admin", "auditor", "dept_admin", "steward", "reviewer")
ORG_ROLES = {"dept_admin", "steward", "reviewer"}

ROLE_LABELS = {
    "platform_admin": "系统管理员",
    "security_admin": "安全保密管理员",
    "auditor": "安全审计员",
    "dept_admin": "部门管理员",
    "steward": "数据管理员",
    "reviewer": "审核员",
}

# permission -> roles holding it; "org" scoped roles hold it for their own organization only.
PERMISSIONS: dict[str, set[str]] = {
    "org.manage": {"platform_admin"},
    "catalog.manage": {"platform_admin"},
    "resource.edit": {"platform_admin", "steward", "dept_admin"},
    "resource.publish": {"platform_admin", "steward", "dept_admin"},
    "codelist.manage": {"platform_admin", "steward", "dept_admin"},
    "user.manage": {"security_admin", "dept_admin"},
    "audit.read": {"auditor", "security_admin"},
    "catalog.read": set(ROLES),
    # exchange: business systems, services, applications and grants (see docs/exchange.md)
    "system.manage": {"platform_admin", "dept_admin"},
    "service.publish": {"platform_admin", "steward", "dept_admin"},
    "exchange.apply": {"steward", "dept_admin"},
    "exchange.review": {"reviewer", "dept_admin"},
    "exchange.operate": {"platform_admin"},
    "exchange.read": {"platform_admin", "auditor", "dept_admin", "steward", "reviewer"},
}
ROLES_A_DEPT_ADMIN_MAY_GRANT = {"steward", "reviewer"}
