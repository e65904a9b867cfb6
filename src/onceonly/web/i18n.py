"""Languages of the console: Chinese by default, English by a `lang` cookie.

Message catalogs are plain .po files under `translations/<lang>/LC_MESSAGES/messages.po`
(msgids are English; the zh catalog translates them, the en catalog may leave them empty).
They are compiled in memory at startup, so no .mo file lives in git. Each language has its own
Jinja2 environment with its translations installed once, so concurrent requests in different
languages never share mutable gettext state.

Updating the catalogs after editing templates::

    .venv/bin/pybabel extract -F src/onceonly/web/babel.cfg -o /tmp/messages.pot src/onceonly/web
    .venv/bin/pybabel update -i /tmp/messages.pot -d src/onceonly/web/translations --no-fuzzy-matching

then translate the new zh entries (tests/web/test_i18n.py fails while any is empty).
"""

from __future__ import annotations

import threading
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Literal, cast

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from fastapi import Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from onceonly import __version__
from onceonly.web import labels

Lang = Literal["zh", "en"]
LANGUAGES: tuple[Lang, ...] = ("zh", "en")
LANG_COOKIE = "lang"
HTML_LANG: dict[Lang, str] = {"zh": "zh-CN", "en": "en"}
BABEL_LOCALE: dict[Lang, str] = {"zh": "zh_Hans_CN", "en": "en"}

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
TRANSLATIONS_DIR = WEB_DIR / "translations"

_lock = threading.Lock()
_environments: dict[Lang, Environment] = {}


def po_path(lang: Lang) -> Path:
    return TRANSLATIONS_DIR / lang / "LC_MESSAGES" / "messages.po"


def read_catalog(lang: Lang) -> Catalog:
    with po_path(lang).open("rb") as fp:
        return read_po(fp, locale=BABEL_LOCALE[lang], domain="messages")


def load_translations(lang: Lang) -> Translations:
    """Compile the .po file into a gettext catalog in memory (fuzzy entries are left out)."""
    buf = BytesIO()
    write_mo(buf, read_catalog(lang), use_fuzzy=False)
    buf.seek(0)
    return Translations(fp=buf, domain="messages")


def _build(lang: Lang) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(load_translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = lang
    env.globals["asset_version"] = __version__
    env.globals["html_lang"] = HTML_LANG[lang]
    env.globals["label"] = partial(labels.label, lang)
    env.globals["role_label"] = partial(labels.role_label, lang)
    return env


def environment(lang: Lang) -> Environment:
    """The (shared, read-only) template environment of one language."""
    env = _environments.get(lang)
    if env is None:
        with _lock:
            env = _environments.get(lang)
            if env is None:
                env = _environments[lang] = _build(lang)
    return env


def load_all() -> None:
    """Build every environment now, so a broken catalog fails at startup, not on a page."""
    for lang in LANGUAGES:
        environment(lang)


def as_lang(value: str | None) -> Lang | None:
    return cast(Lang, value) if value in LANGUAGES else None


def lang_of(request: Request) -> Lang:
    """The `lang` cookie if it names a language we have, else the configured default."""
    chosen = as_lang(request.cookies.get(LANG_COOKIE))
    if chosen:
        return chosen
    default = as_lang(getattr(request.app.state.settings, "default_language", None))
    return default or "zh"
