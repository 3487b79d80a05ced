"""Fixtures shared by the unit tests of the HTTP service: one test PKI and one in-process server a module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.pki import Pki
from tests.serving import Running, Served, service_for, serving


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def default_server(pki: Pki) -> Iterator[Served]:
    """The default service (enforce, the embedded example inventory, a static source), shared by a module."""
    with serving(service_for(), pki) as served:
        yield served


@pytest.fixture
async def app(default_server: Served) -> AsyncIterator[Running]:
    async with default_server.client(timeout=30) as client:
        yield Running(default_server, client)
