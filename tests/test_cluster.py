"""Tests for webhook.adapters.cluster: the real kubernetes client against a scriptable fake API on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from tests.fake_apiserver import FakeApiServer
from webhook.adapters.cluster import (
    Backoff,
    ClusterConfigError,
    ClusterMirror,
    ObjectMirror,
    Snapshot,
    api_client_from,
    watch_timeout_within,
)
from webhook.adapters.http.sources import ClusterSource

# Milliseconds instead of seconds, so failure paths cost the suite almost nothing.
FAST = Backoff(initial_seconds=0.001, max_seconds=0.01)
WAIT_SECONDS = 5.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.002)


class Published:
    """An on_change callback that keeps every snapshot it was given."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self._lock = threading.Lock()

    def __call__(self, objects: Snapshot) -> None:
        with self._lock:
            self.snapshots.append(objects)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.snapshots)

    @property
    def names(self) -> set[str]:
        with self._lock:
            return set(self.snapshots[-1]) if self.snapshots else set()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def api_client(fake: FakeApiServer) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=fake.url))
    yield client
    client.close()


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def published() -> Published:
    return Published()


MirrorFactory = Callable[..., ObjectMirror]


@pytest.fixture
def node_mirror(core: kubernetes.client.CoreV1Api, published: Published) -> Iterator[MirrorFactory]:
    """Builds a started nodes mirror (keyword overrides go to ObjectMirror); stops it afterwards."""
    mirrors: list[ObjectMirror] = []

    def build(**overrides: Any) -> ObjectMirror:
        options: dict[str, Any] = {"backoff": FAST} | overrides
        mirror = ObjectMirror("nodes", core.list_node, published, **options)
        mirrors.append(mirror)
        mirror.start()
        return mirror

    yield build
    for mirror in mirrors:
        assert mirror.stop(), "mirror thread still running after stop()"


def watching(fake: FakeApiServer, mirror: ObjectMirror) -> None:
    wait_until(lambda: mirror.synced and fake.nodes.open_watches == 1, "the mirror is watching")


def test_initial_list_is_published_as_wire_dicts_and_marks_synced(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    fake.nodes.put("pool-a-1", {"kubernetes.azure.com/os-sku": "Flatcar"})
    fake.nodes.put("pool-b-1")
    mirror = node_mirror()
    watching(fake, mirror)

    first = published.snapshots[0]
    assert set(first) == {"pool-a-1", "pool-b-1"}
    assert first == fake.nodes.objects  # kind and apiVersion restored on list items
    assert first["pool-a-1"]["metadata"]["labels"] == {"kubernetes.azure.com/os-sku": "Flatcar"}
    assert first["pool-a-1"]["status"]["nodeInfo"]["osImage"].startswith("Flatcar Container Linux")
    with pytest.raises(TypeError):
        first["pool-c-1"] = {}  # type: ignore[index]
    assert mirror.resource_version == str(fake.rv)
    assert mirror.objects is published.snapshots[-1]
    assert fake.nodes.watch_requests == [
        {
            "allowWatchBookmarks": "true",
            "resourceVersion": str(fake.rv),
            "timeoutSeconds": "300",
            "watch": "true",
        }
    ]
    assert (mirror.restarts, mirror.relists) == (0, 0)


def test_added_modified_deleted_are_reflected_and_old_snapshots_stay_unchanged(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    fake.nodes.put("a")
    fake.nodes.put("b")
    mirror = node_mirror()
    watching(fake, mirror)
    first = published.snapshots[0]

    fake.nodes.put("c")
    fake.nodes.put("a", {"immutable-os.io/profile": "flatcar"})
    fake.nodes.delete("b")
    wait_until(lambda: published.count == 4, "three events are published")

    assert [set(snapshot) for snapshot in published.snapshots] == [
        {"a", "b"},
        {"a", "b", "c"},
        {"a", "b", "c"},
        {"a", "c"},
    ]
    assert published.snapshots[-1] == fake.nodes.objects
    assert published.snapshots[-1]["a"]["metadata"]["labels"] == {"immutable-os.io/profile": "flatcar"}
    assert first["a"]["metadata"]["labels"] == {}
    assert mirror.resource_version == str(fake.rv)


def test_events_arriving_in_one_read_are_published_once(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    fake.nodes.put("a")
    mirror = node_mirror()
    watching(fake, mirror)

    with fake.nodes.burst():
        fake.nodes.put("x")
        fake.nodes.put("y")
        fake.nodes.delete("a")
    wait_until(lambda: published.names == {"x", "y"}, "the burst is published")
    assert published.count == 2


def gone_as_http_status_on_rewatch(fake: FakeApiServer) -> None:
    fake.nodes.gone_form = "http"
    fake.nodes.drop_watches()


def gone_as_error_event_on_rewatch(fake: FakeApiServer) -> None:
    fake.nodes.gone_form = "event"
    fake.nodes.drop_watches()


def gone_as_error_event_on_open_watch(fake: FakeApiServer) -> None:
    fake.nodes.send_error(410)


@pytest.mark.parametrize(
    "expire",
    [gone_as_http_status_on_rewatch, gone_as_error_event_on_rewatch, gone_as_error_event_on_open_watch],
    ids=["http-410", "error-event-410", "error-event-410-on-open-watch"],
)
def test_gone_relists_and_state_equals_the_new_list(
    fake: FakeApiServer,
    node_mirror: MirrorFactory,
    published: Published,
    expire: Callable[[FakeApiServer], None],
) -> None:
    for name in ("a", "b", "c"):
        fake.nodes.put(name)
    mirror = node_mirror()
    watching(fake, mirror)

    # Changes the mirror never hears about, then the history that could have told it is compacted.
    fake.nodes.delete("b", notify=False)
    fake.nodes.put("d", notify=False)
    fake.nodes.put("a", {"changed": "true"}, notify=False)
    fake.nodes.compact()
    expire(fake)

    wait_until(lambda: mirror.relists == 1 and fake.nodes.open_watches == 1, "relisted and watching again")
    assert published.snapshots[-1] == fake.nodes.objects
    assert set(published.snapshots[-1]) == {"a", "c", "d"}
    assert len(fake.nodes.list_requests) == 2
    assert fake.nodes.watch_requests[-1]["resourceVersion"] == str(fake.rv)


def test_a_410_right_after_a_relist_backs_off(
    fake: FakeApiServer, node_mirror: MirrorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = node_mirror(backoff=Backoff(initial_seconds=0.05, max_seconds=1), uniform=lambda: 1.0)
    watching(fake, mirror)
    fake.nodes.watch_answers.extend(["event-410", "http-410"])
    with caplog.at_level(logging.INFO, logger="webhook.adapters.cluster"):
        fake.nodes.send_error(410)
        wait_until(
            lambda: mirror.relists == 3 and fake.nodes.open_watches == 1, "watching after three relists"
        )
    # The first 410 is routine and relists at once; 410s with no event since the relist back off.
    assert retry_waits(caplog) == ["0.00", "0.05", "0.10"]
    assert (mirror.restarts, len(fake.nodes.list_requests)) == (0, 4)

    # An event ends the storm: the next 410 relists at once again.
    fake.nodes.put("a")
    wait_until(lambda: mirror.objects.keys() == {"a"}, "the event is applied")
    with caplog.at_level(logging.INFO, logger="webhook.adapters.cluster"):
        fake.nodes.send_error(410)
        wait_until(lambda: mirror.relists == 4 and fake.nodes.open_watches == 1, "watching after a relist")
    assert retry_waits(caplog) == ["0.00", "0.05", "0.10", "0.00"]


def test_dropped_connection_resumes_from_the_last_resource_version(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    mirror = node_mirror()
    watching(fake, mirror)
    listed = mirror.resource_version
    last = fake.nodes.put("x")["metadata"]["resourceVersion"]
    wait_until(lambda: published.names == {"x"}, "x is published")

    # Holding the server's lock, the change lands after the drop and before the re-watch registers,
    # so only a watch that resumes from `last` can see it (replayed from history).
    with fake.lock:
        fake.nodes.drop_watches()
        fake.nodes.put("y")
    wait_until(lambda: published.names == {"x", "y"}, "y is replayed on the resumed watch")

    assert [request["resourceVersion"] for request in fake.nodes.watch_requests] == [listed, last]
    assert (mirror.restarts, mirror.relists, len(fake.nodes.list_requests)) == (1, 0, 1)


def test_server_errors_back_off_then_recover(
    fake: FakeApiServer, core: kubernetes.client.CoreV1Api, caplog: pytest.LogCaptureFixture
) -> None:
    published = Published()
    # uniform() == 1 makes each jittered wait its ceiling, which the warnings then report.
    mirror = ObjectMirror(
        "nodes",
        core.list_node,
        published,
        backoff=Backoff(initial_seconds=0.05, max_seconds=0.15),
        uniform=lambda: 1.0,
    )
    mirror.start()
    try:
        watching(fake, mirror)
        resume_from = mirror.resource_version
        fake.nodes.watch_answers.extend(["http-500", "event-500", "http-500"])
        with caplog.at_level(logging.DEBUG, logger="webhook.adapters.cluster"):
            fake.nodes.drop_watches()
            wait_until(
                lambda: len(fake.nodes.watch_requests) == 5 and fake.nodes.open_watches == 1, "watching"
            )
            assert {request["resourceVersion"] for request in fake.nodes.watch_requests} == {resume_from}
            assert mirror.restarts == 4

            fake.nodes.put("after")
            wait_until(lambda: published.names == {"after"}, "the recovered watch delivers events")
            # An event proves the watch healthy again, so the next failure starts from the first wait.
            fake.nodes.drop_watches()
            wait_until(lambda: mirror.restarts == 5, "the next drop is counted")

        assert retry_waits(caplog) == ["0.05", "0.10", "0.15", "0.15", "0.05"]
    finally:
        assert mirror.stop()


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        match.group(1)
        for record in caplog.records
        if (match := re.search(r"(?:retrying|listing again) in ([0-9.]+)s", record.getMessage()))
    ]


def test_list_failures_back_off_until_the_first_list_succeeds(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    fake.nodes.put("a")
    fake.nodes.list_answers.extend(["http-500", "http-410", "html-200"])
    mirror = node_mirror()
    watching(fake, mirror)
    assert (mirror.restarts, mirror.relists, len(fake.nodes.list_requests)) == (3, 0, 4)
    assert published.names == {"a"}


# Recovery after an outage ---------------------------------------------------------------------------------

OUTAGE_BACKOFF = Backoff(initial_seconds=0.01, max_seconds=0.04)


def test_after_an_outage_the_first_answer_ends_the_backoff_and_a_410_relists_without_a_second_wait(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(100.0)
    mirror = node_mirror(backoff=OUTAGE_BACKOFF, uniform=lambda: 1.0, clock=clock)
    fake.nodes.put("a")
    watching(fake, mirror)
    with caplog.at_level(logging.DEBUG, logger="webhook.adapters.cluster"):
        fake.go_down()
        wait_until(lambda: mirror.restarts >= 5, "several attempts are refused")
        # Meanwhile a node joins, and the restarted apiserver's watch cache starts after our version.
        fake.nodes.put("joined")
        fake.nodes.compact()
        clock.now += 30
        assert not mirror.is_stale(600)  # judged from the last snapshot during the outage
        assert published.names == {"a"}
        fake.come_back()
        wait_until(lambda: published.names == {"a", "joined"}, "the node that joined is published")
        wait_until(lambda: fake.nodes.open_watches == 1, "watching again")

    waits = retry_waits(caplog)
    # Doubling to the ceiling while the server is down, then one 410 that relists at once.
    assert waits[:4] == ["0.01", "0.02", "0.04", "0.04"]
    assert set(waits[4:-1]) == {"0.04"}
    assert waits[-1] == "0.00"
    assert (mirror.failures, mirror.relists, len(fake.nodes.list_requests)) == (0, 1, 2)
    assert mirror.last_sync_monotonic == 130.0

    # One attempt a few hundredths of a second (a second in production): warnings at the 1st, 2nd, 4th,
    # 8th... failure in a row, the rest at debug, and one line when the API answers again.
    in_a_row = [
        (record.levelno, int(match.group(1)))
        for record in caplog.records
        if (match := re.search(r"\((\d+) in a row\)", record.getMessage()))
    ]
    assert [n for _, n in in_a_row] == list(range(1, len(in_a_row) + 1))
    assert [n for level, n in in_a_row if level == logging.WARNING] == [n for n in (1, 2, 4, 8, 16, 32)
                                                                        if n <= len(in_a_row)]  # fmt: skip
    assert f"nodes: the API answers again after {len(in_a_row)} failed attempts" in caplog.messages


def test_an_established_watch_ends_the_backoff_before_any_event(
    fake: FakeApiServer, node_mirror: MirrorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(100.0)
    mirror = node_mirror(backoff=OUTAGE_BACKOFF, uniform=lambda: 1.0, clock=clock)
    watching(fake, mirror)
    fake.nodes.watch_answers.extend(["http-500"] * 4)
    with caplog.at_level(logging.DEBUG, logger="webhook.adapters.cluster"):
        fake.nodes.drop_watches()
        wait_until(lambda: len(fake.nodes.watch_requests) == 6, "four failed watches, then one more")
        wait_until(lambda: mirror.failures == 0, "the established watch resets the failures")
        # Open for a while (by the mirror's clock) without a single event, then dropped.
        clock.now += 5
        fake.nodes.drop_watches()
        wait_until(lambda: len(fake.nodes.watch_requests) == 7, "the watch is resumed")
    # The first drop came at once after the watch opened (the clock stood still): a flapping watch, whose
    # failures count on. The second ends a watch that had been established: the backoff starts over.
    assert retry_waits(caplog) == ["0.01", "0.02", "0.04", "0.04", "0.04", "0.01"]
    assert mirror.restarts == 6 and mirror.relists == 0


def test_a_dropped_watch_resumes_after_the_outage_from_the_last_resource_version(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    mirror = node_mirror(backoff=OUTAGE_BACKOFF)
    watching(fake, mirror)
    last = fake.nodes.put("x")["metadata"]["resourceVersion"]
    wait_until(lambda: published.names == {"x"}, "x is published")
    fake.go_down()
    wait_until(lambda: mirror.restarts >= 2, "attempts are refused")
    fake.nodes.put("y")  # kept in the history: the resumed watch replays it
    fake.come_back()
    wait_until(lambda: published.names == {"x", "y"}, "y is replayed on the resumed watch")
    assert fake.nodes.watch_requests[-1]["resourceVersion"] == last
    assert (mirror.relists, len(fake.nodes.list_requests), mirror.failures) == (0, 1, 0)


def test_readiness_follows_the_staleness_allowance_not_the_outage(
    fake: FakeApiServer, api_client: kubernetes.client.ApiClient
) -> None:
    clock = FakeClock(1000.0)
    cluster = ClusterMirror(api_client, Published(), Published(), backoff=OUTAGE_BACKOFF, clock=clock)
    source = ClusterSource(cluster, max_staleness_seconds=600)
    assert not source.ready()
    cluster.start()
    try:
        wait_until(lambda: fake.nodes.open_watches == 1 and fake.namespaces.open_watches == 1, "watching")
        wait_until(source.ready, "ready after the first lists")
        fake.go_down()
        wait_until(lambda: min(cluster.nodes.restarts, cluster.namespaces.restarts) >= 2, "both failing")
        clock.now += 600
        assert source.ready() and not source.stale()  # the last snapshot is exactly as old as allowed
        clock.now += 1
        assert not source.ready() and source.stale()
        fake.come_back()
        wait_until(source.ready, "ready again once the API answers")
        assert not source.stale()
    finally:
        assert cluster.stop()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json\n",
        b'{"type": "ADDED"}\n',
        b'{"type": "SURPRISE", "object": {"metadata": {"name": "z", "resourceVersion": "999"}}}\n',
    ],
    ids=["not-json", "no-object", "unknown-type"],
)
def test_unusable_watch_lines_restart_the_watch_from_the_last_resource_version(
    fake: FakeApiServer, node_mirror: MirrorFactory, garbage: bytes
) -> None:
    mirror = node_mirror()
    watching(fake, mirror)
    resume_from = mirror.resource_version
    fake.nodes.send_raw(garbage)
    wait_until(lambda: len(fake.nodes.watch_requests) == 2, "the watch restarts")
    assert fake.nodes.watch_requests[-1]["resourceVersion"] == resume_from
    assert mirror.restarts == 1


def test_bookmarks_move_the_resource_version_without_publishing(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    fake.nodes.put("a")
    mirror = node_mirror()
    watching(fake, mirror)
    before = published.count

    bookmark = fake.nodes.bookmark()
    wait_until(lambda: mirror.resource_version == bookmark, "the bookmark is applied")
    assert published.count == before

    fake.nodes.drop_watches()
    wait_until(lambda: len(fake.nodes.watch_requests) == 2, "the watch restarts")
    assert fake.nodes.watch_requests[-1]["resourceVersion"] == bookmark


def test_a_clean_end_renews_the_watch_without_counting_a_restart(
    fake: FakeApiServer, node_mirror: MirrorFactory, published: Published
) -> None:
    mirror = node_mirror()
    watching(fake, mirror)
    last = fake.nodes.put("x")["metadata"]["resourceVersion"]
    wait_until(lambda: published.names == {"x"}, "x is published")
    fake.nodes.end_watches()
    wait_until(lambda: len(fake.nodes.watch_requests) == 2, "the watch is renewed")
    assert fake.nodes.watch_requests[-1]["resourceVersion"] == last
    assert mirror.restarts == 0


def test_a_watch_that_ends_at_once_without_events_counts_as_a_failure(
    fake: FakeApiServer, node_mirror: MirrorFactory
) -> None:
    mirror = node_mirror()
    watching(fake, mirror)
    fake.nodes.end_watches()
    wait_until(lambda: len(fake.nodes.watch_requests) == 2, "the watch is retried")
    assert mirror.restarts == 1


def test_stop_returns_promptly_mid_watch(fake: FakeApiServer, node_mirror: MirrorFactory) -> None:
    # Default timeouts: the watch would otherwise stay open for 300 s and the socket read for 330 s.
    mirror = node_mirror(backoff=Backoff())
    watching(fake, mirror)
    started = time.monotonic()
    assert mirror.stop()
    assert time.monotonic() - started < 2.0
    assert not mirror.running
    assert mirror.restarts == 0


def test_stop_returns_promptly_during_backoff(fake: FakeApiServer, node_mirror: MirrorFactory) -> None:
    fake.nodes.list_answers.append("http-500")
    mirror = node_mirror(backoff=Backoff(initial_seconds=60, max_seconds=60), uniform=lambda: 1.0)
    wait_until(lambda: mirror.restarts == 1, "the failed list is backing off")
    # Never listed: stale whatever the allowance, and nothing published yet.
    assert not mirror.synced
    assert mirror.is_stale(3600)
    assert dict(mirror.objects) == {}
    started = time.monotonic()
    assert mirror.stop()
    assert time.monotonic() - started < 2.0


def test_is_stale_follows_the_last_sign_of_life(fake: FakeApiServer, node_mirror: MirrorFactory) -> None:
    clock = FakeClock(100.0)
    mirror = node_mirror(clock=clock)
    watching(fake, mirror)
    assert mirror.last_sync_monotonic == 100.0
    assert not mirror.is_stale(30)

    clock.now = 131.0
    assert mirror.is_stale(30)

    bookmark = fake.nodes.bookmark()
    wait_until(lambda: mirror.resource_version == bookmark, "the bookmark is applied")
    assert mirror.last_sync_monotonic == 131.0
    assert not mirror.is_stale(30)


def test_a_failing_callback_does_not_stop_the_mirror(
    fake: FakeApiServer, core: kubernetes.client.CoreV1Api
) -> None:
    seen: list[set[str]] = []

    def on_change(objects: Snapshot) -> None:
        seen.append(set(objects))
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    mirror = ObjectMirror("nodes", core.list_node, on_change, backoff=FAST)
    mirror.start()
    try:
        watching(fake, mirror)
        fake.nodes.put("a")
        wait_until(lambda: seen[-1] == {"a"}, "the next change is published")
        assert mirror.restarts == 0
    finally:
        assert mirror.stop()


def test_cluster_mirror_keeps_nodes_and_namespaces(
    fake: FakeApiServer, api_client: kubernetes.client.ApiClient
) -> None:
    fake.nodes.put("node-1")
    fake.namespaces.put("kube-system")
    nodes, namespaces = Published(), Published()
    cluster = ClusterMirror(api_client, nodes, namespaces, backoff=FAST)
    cluster.start()
    try:
        wait_until(lambda: cluster.synced, "both mirrors are synced")
        assert not cluster.is_stale(60)
        fake.namespaces.put("team-a", {"immutable-os.io/mode": "enforce"})
        wait_until(lambda: namespaces.names == {"kube-system", "team-a"}, "the namespace is published")
        assert nodes.names == {"node-1"}
        assert namespaces.snapshots[-1]["team-a"]["metadata"]["labels"] == {"immutable-os.io/mode": "enforce"}
        wait_until(
            lambda: fake.nodes.open_watches == 1 and fake.namespaces.open_watches == 1, "both watching"
        )
    finally:
        started = time.monotonic()
        assert cluster.stop()
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0), (10_000, 2.0)],
    ids=["none", "first", "second", "third-reaches-the-cap", "capped", "long-outage"],
)
def test_backoff_is_full_jitter_under_a_doubling_ceiling_of_two_seconds(
    failures: int, ceiling: float
) -> None:
    backoff = Backoff()
    assert backoff.delay(failures, uniform=lambda: 1.0) == ceiling
    assert backoff.delay(failures, uniform=lambda: 0.0) == 0.0
    assert backoff.delay(failures, uniform=lambda: 0.5) == ceiling / 2


@pytest.mark.parametrize(
    ("staleness", "renewal"),
    [(600, 300), (3600, 300), (120, 60), (6, 3), (7.9, 3), (1.5, 1), (0.1, 1)],
    ids=["default", "long-allowance-capped", "two-minutes", "six-seconds", "rounds-down", "short", "tiny"],
)
def test_the_watch_is_renewed_within_half_the_staleness_allowance(staleness: float, renewal: int) -> None:
    # A quiet collection's only sign of life is the renewal: renewing within half the allowance keeps a
    # healthy watch from reading as stale.
    assert watch_timeout_within(staleness) == renewal


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
def outside_a_pod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_api_client_from_an_explicit_kubeconfig(
    fake: FakeApiServer, tmp_path: Path, outside_a_pod: None
) -> None:
    fake.namespaces.put("default")
    client = api_client_from(str(write_kubeconfig(tmp_path / "config", fake.url)))
    try:
        names = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]
        assert names == ["default"]
    finally:
        client.close()


def test_api_client_from_the_default_kubeconfig_outside_a_pod(
    fake: FakeApiServer, tmp_path: Path, outside_a_pod: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", fake.url)))
    client = api_client_from(None)
    try:
        assert client.configuration.host == fake.url
    finally:
        client.close()


def test_api_client_from_a_missing_kubeconfig_names_the_file_and_the_fix(
    tmp_path: Path, outside_a_pod: None
) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ClusterConfigError, match="--kubeconfig") as raised:
        api_client_from(missing)
    assert missing in str(raised.value)


def test_api_client_from_a_broken_kubeconfig_says_so_in_one_line(tmp_path: Path, outside_a_pod: None) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nusers:\n- name: x\n  user: {token: abc\n")
    with pytest.raises(ClusterConfigError, match="--kubeconfig") as raised:
        api_client_from(str(broken))
    assert str(broken) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_api_client_from_nothing_names_every_way_to_fix_it(outside_a_pod: None) -> None:
    with pytest.raises(ClusterConfigError, match="not running in a pod") as raised:
        api_client_from(None)
    assert "--kubeconfig" in str(raised.value)
    assert "KUBECONFIG" in str(raised.value)
