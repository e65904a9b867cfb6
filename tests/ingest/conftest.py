"""Fixtures shared by the ingest pipeline and CLI tests."""

from __future__ import annotations

import pytest
from ingest_factories import World, new_org, person_resource, setup_db

from onceonly.catalog.models import Organization
from onceonly.db import Database


@pytest.fixture(scope="module")
def org(db: Database) -> Organization:
    setup_db(db)
    return new_org(db)


@pytest.fixture
def w(db: Database, org: Organization) -> World:
    """A fresh published person resource (with the citizen_id_agrees cross-field rule)."""
    return World(db, org, person_resource(db, org))
