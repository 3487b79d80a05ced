"""Fixtures for the end-to-end tests: one control plane per session, a fresh namespace per test.

The binaries come from ``KUBEBUILDER_ASSETS``; without them the tests skip locally and fail in CI
(``CI=true``). Get them with ``export "$(hack/control-plane.sh | tail -1)"``.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .harness import (
    ASSETS_ENV,
    AssetsMissing,
    ControlPlane,
    create_node_pool,
    delete_node_pool,
    find_assets,
    unique_pool_name,
)
from .webhook_fixture import (
    SESSION_CONFIG,
    SessionPools,
    SessionWebhook,
    WebhookProcess,
    chart_configurations,
    register,
    unregister,
    wait_until_webhook_answers,
)

E2E_DIR = Path(__file__).resolve().parent

HOW_TO_GET_BINARIES = (
    'build them once with: export "$(hack/control-plane.sh | tail -1)"  '
    "(kube-apiserver, etcd, kubectl... from the Go module proxy into a cache outside the repository; "
    f"a cold build takes about 6 minutes on 2 cores), then run pytest with {ASSETS_ENV} set"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """The directory with etcd, kube-apiserver, kubectl, kube-scheduler, kube-controller-manager, helm."""
    try:
        return find_assets(
            required=("etcd", "kube-apiserver", "kubectl", "kube-scheduler", "kube-controller-manager")
        )
    except AssetsMissing as exc:
        message = f"end-to-end tests need the control-plane binaries: {exc}; {HOW_TO_GET_BINARIES}"
        if _in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def plane(assets_dir: Path) -> Iterator[ControlPlane]:
    """A control plane of the module's own, for tests that stop, restart or cut it."""
    with ControlPlane(assets_dir) as cp:
        yield cp


@pytest.fixture(scope="session")
def control_plane(assets_dir: Path) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-scheduler for the whole session (no controller-manager: ask for the
    `controller_manager` fixture when a test needs ReplicaSets, DaemonSet pods or garbage collection)."""
    with ControlPlane(assets_dir) as cp:
        cp.start_scheduler()
        yield cp


@pytest.fixture(scope="session")
def controller_manager(control_plane: ControlPlane) -> ControlPlane:
    """The session control plane with kube-controller-manager running too (started once, on demand)."""
    control_plane.start_controller_manager()
    return control_plane


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """An admin ApiClient (official client) for the session control plane."""
    api = control_plane.api_client()
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def core_v1(api_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core_v1: k8s.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (not waited for: namespace deletion finishes only
    when a controller-manager runs)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core_v1.delete_namespace(name)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def node_pools(core_v1: k8s.CoreV1Api) -> Iterator[Callable[..., list[k8s.V1Node]]]:
    """A factory: ``node_pools(name, count, **create_node_pool_kwargs)`` creates a pool of Ready Nodes;
    all of them are deleted after the test. Pool names must be unique in the session (nodes are
    cluster-scoped); `harness.unique_pool_name` helps."""
    created: list[str] = []

    def make(name: str, count: int = 1, **kw: Any) -> list[k8s.V1Node]:
        created.append(name)
        return create_node_pool(core_v1, name, count, **kw)

    try:
        yield make
    finally:
        for name in created:
            delete_node_pool(core_v1, name)


# ------------------------------------------------------------------------------------- the real webhook


@pytest.fixture(scope="session")
def session_pools(api_client: k8s.ApiClient) -> Iterator[SessionPools]:
    core = k8s.CoreV1Api(api_client)
    pools = SessionPools(
        unique_pool_name("general"),
        unique_pool_name("azlinux"),
        unique_pool_name("acl"),
        unique_pool_name("osguard"),
        {},
    )
    created: list[str] = []
    try:
        # ACL and OS Guard carry the OS family in os-sku (AzureLinux), as the general Azure Linux pool does.
        for pool, count, sku in ((pools.general, 2, "Ubuntu"), (pools.azlinux, 1, "AzureLinux"),
                                 (pools.acl, 2, "AzureContainerLinux"), (pools.osguard, 1, "AzureLinuxOSGuard")):  # fmt: skip
            created.append(pool)
            pools.nodes[pool] = sorted(
                n.metadata.name for n in create_node_pool(core, pool, count, os_sku=sku)
            )
        yield pools
    finally:
        for pool in created:
            delete_node_pool(core, pool)


@pytest.fixture(scope="session")
def webhook(
    control_plane: ControlPlane, api_client: k8s.ApiClient, session_pools: SessionPools
) -> Iterator[SessionWebhook]:
    """`python -m webhook serve` (enforce; exempt group e2e-breakglass, user e2e-exempt-user, namespace
    e2e-exempt) registered with the chart's own webhook configurations (rendered by helm, by URL): pods
    failurePolicy Fail, workloads Ignore, kube-system and the release namespace excluded, the host-access
    matchConditions. The session node pools exist and the apiserver is calling it. Teardown unregisters
    first, then stops the process."""
    process = WebhookProcess(control_plane, "session", SESSION_CONFIG)
    configurations = chart_configurations(process)
    try:
        process.start()
        register(api_client, configurations)
        wait_until_webhook_answers(k8s.CoreV1Api(api_client), "default", session_pools.acl)
        yield SessionWebhook(process, session_pools, configurations)
    finally:
        try:
            unregister(api_client, configurations)
        finally:
            process.stop()
