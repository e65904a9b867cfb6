"""What the exchange, audit and statistics pages share: the staff member posting a form, form
errors keyed by field, and times shown on the city's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, Request
from pydantic import ValidationError

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.deps import SESSION_COOKIE, DbSession, client_ip
from onceonly.errors import AuthenticationRequired, PlatformError
from onceonly.settings import Settings
from onceonly.web.csrf import csrf_guard

CITY = timezone(timedelta(hours=8), "UTC+8")  # the city's clock (China Standard Time, no daylight saving)


def form_actor(request: Request, session: DbSession, _checked: Annotated[None, Depends(csrf_guard)]) -> Actor:
    """The signed-in staff member posting a console form. csrf_guard (a dependency of this one,
    so it has run) checked the token in the form body; deps.current_actor would also demand the
    X-CSRF-Token header, which a plain form post cannot send."""
    settings: Settings = request.app.state.settings
    cookie = request.cookies.get(SESSION_COOKIE)
    user = accounts.resolve_web_session(session, cookie, settings.session_idle_minutes) if cookie else None
    if user is None:
        raise AuthenticationRequired("sign in to continue")
    return accounts.actor_for(user, client_ip(request), via="web")


FormActor = Annotated[Actor, Depends(form_actor)]


def city_time(moment: datetime | None, seconds: bool = True) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CITY).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def platform_errors(exc: PlatformError, known: tuple[str, ...]) -> dict[str, str]:
    """A service's refusal as {form field: message}; a field the form does not show goes to "_"."""
    field = (exc.field or "").split(".", 1)[0]
    return {field if field in known else "_": exc.message}


def validation_errors(exc: ValidationError, known: tuple[str, ...]) -> dict[str, str]:
    """A schema's refusal (e.g. a text too long) as {form field: message}, first error per field."""
    out: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "_"
        out.setdefault(field if field in known else "_", f"{field}: {error['msg']}")
    return out
