"""Who is acting: a staff user (web or API token) or the operator's CLI on the server."""

from __future__ import annotations

from dataclasses import dataclass

from onceonly.accounts.roles import ORG_ROLES, PERMISSIONS
from onceonly.errors import PermissionDenied


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    role: str
    org_id: int | None = None
    ip: str | None = None
    via: str = "web"

    @classmethod
    def cli(cls) -> Actor:
        """The operator at the server's console acts as platform operator; still audited."""
        import getpass

        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        return cls(user_id=None, username=f"cli:{who}", role="platform_admin", via="cli")

    def can(self, permission: str, org_id: int | None = None) -> bool:
        if self.via == "cli":
            return True
        if self.role not in PERMISSIONS.get(permission, set()):
            return False
        if self.role in ORG_ROLES and org_id is not None:
            return self.org_id == org_id
        return True

    def require(self, permission: str, org_id: int | None = None) -> None:
        if not self.can(permission, org_id):
            scope = " for this organization" if org_id is not None and self.role in ORG_ROLES else ""
            raise PermissionDenied(f"role {self.role} may not {permission}{scope}")
