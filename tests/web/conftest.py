"""Fixtures of the web console tests: a seeded SQLite database (see webseed.py), the app, and
clients, anonymous or signed in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webseed import Seed, seed_database, sign_in

from onceonly.app import create_app


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    data = seed_database(tmp_path_factory.mktemp("web-home"))
    yield data
    data.db.dispose()


@pytest.fixture(scope="module")
def app(seed: Seed) -> FastAPI:
    return create_app(seed.settings, seed.db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        yield c


@pytest.fixture
def signed_in(client: TestClient, seed: Seed) -> TestClient:
    response = sign_in(client, seed.username, seed.password)
    assert response.status_code == 303, response.text
    return client
