"""Serving-certificate rotation under load, through the real apiserver: no pod create fails.

A webhook registered with the chart's own configurations (failurePolicy Fail, every pod of the test's
namespace, host access or not) answers while pods are created from 8 threads; meanwhile its serving pair
is rotated twice, the way an operator's cert-manager does it, with the key written before the certificate
each time (a half-written pair the service must not load):
1. a new leaf from the same CA;
2. a new CA: the configurations' caBundle first carries both CAs, then a leaf of the new CA is written,
   then the caBundle is narrowed to the new CA.
The service reloads the files (webhook/adapters/tls.py); each new leaf must be the one served before the
next step. ``E2E_ROTATION_CREATES`` sets the number of creates (default 500); they continue until the
rotations are done (bounded: MAX_CREATES_FACTOR times that, MAX_LOAD_SECONDS).
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s

from webhook.adapters import certs

from .harness import LOOPBACK, ControlPlane, wait_for
from .webhook_fixture import (
    SESSION_CONFIG,
    WebhookProcess,
    api_message,
    chart_configurations,
    register,
    unregister,
)

CREATES = int(os.environ.get("E2E_ROTATION_CREATES", "500"))
CREATORS = 8
#: Bounds on the load: it must outlast the rotations (~15 s), and stops by itself whatever happens.
MAX_CREATES_FACTOR = 20
MAX_LOAD_SECONDS = 180.0
IMAGE = "registry.k8s.io/pause:3.10"
#: The apiserver reads webhook configurations through an informer and offers no sign of having read a
#: new caBundle; a pause stands for the operator waiting (cert-manager's cainjector runs well ahead).
CA_BUNDLE_PROPAGATION_SECONDS = 3.0
#: Longer than the service's check interval (2 s): the half-written pair is on disk across a check.
HALF_WRITTEN_SECONDS = 2.5


def plain_pod(name: str) -> dict[str, Any]:
    # Never scheduled: the scheduler's work is not what this measures.
    spec = {"schedulerName": "e2e-unscheduled", "containers": [{"name": "main", "image": IMAGE}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def served_certificate(process: WebhookProcess) -> bytes:
    """The DER leaf the webhook presents to a new connection now."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((LOOPBACK, process.port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


class Load:
    """Pod creates from CREATORS threads until at least `minimum` are done and `stop` is set (at most
    MAX_CREATES_FACTOR x `minimum`, or MAX_LOAD_SECONDS). Each failure is kept with its message."""

    def __init__(self, cp: ControlPlane, namespace: str, minimum: int) -> None:
        self.cp, self.namespace, self.minimum = cp, namespace, minimum
        self.done = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._deadline = time.monotonic() + MAX_LOAD_SECONDS
        self.threads = [threading.Thread(target=self._creator, daemon=True) for _ in range(CREATORS)]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= MAX_CREATES_FACTOR * self.minimum or time.monotonic() > self._deadline:
                return None
            if self._next >= self.minimum and self.stop.is_set():
                return None
            self._next += 1
            return self._next

    def _creator(self) -> None:
        api = self.cp.api_client()
        core = k8s.CoreV1Api(api)
        try:
            while (index := self._take()) is not None:
                try:
                    core.create_namespaced_pod(self.namespace, plain_pod(f"load-{index}"))
                except k8s.ApiException as exc:
                    with self._lock:
                        self.failures.append(api_message(exc) or str(exc.reason))
                with self._lock:
                    self.done += 1
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def reached(self, count: int) -> Callable[[], bool]:
        return lambda: self.done >= count

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)
        assert not any(t.is_alive() for t in self.threads), "creators still running"


def write_half_then_whole(process: WebhookProcess, serving: certs.ServingCertificate) -> None:
    """The key first (the old certificate stays: a pair that does not match), across a reload check, then
    the certificate; wait until the new leaf is served."""
    warned = len(process.log_entries())
    process.key_path.write_bytes(serving.key_pem)
    time.sleep(HALF_WRITTEN_SECONDS)
    seen = [e.get("msg", "") for e in process.log_entries()[warned:]]
    assert any("not reloading" in m for m in seen), seen  # the half-written pair was seen and refused
    process.cert_path.write_bytes(serving.cert_pem)
    wait_for(lambda: served_certificate(process) == der(serving.cert_pem), timeout=10,
             message="the new leaf to be served")  # fmt: skip


def set_ca_bundle(api: k8s.ApiClient, configurations: tuple[dict[str, Any], ...], bundle_pem: bytes) -> None:
    admission = k8s.AdmissionregistrationV1Api(api)
    bundle = certs.ca_bundle_b64(bundle_pem)
    for conf in configurations:
        name = conf["metadata"]["name"]
        ops = [{"op": "replace", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
               for i in range(len(conf["webhooks"]))]  # fmt: skip
        if conf["kind"] == "MutatingWebhookConfiguration":
            admission.patch_mutating_webhook_configuration(name, ops)
        else:
            admission.patch_validating_webhook_configuration(name, ops)


def test_two_serving_certificate_rotations_under_load_fail_no_create(
    control_plane: ControlPlane, api_client: k8s.ApiClient, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    token = secrets.token_hex(3)
    process = WebhookProcess(control_plane, f"rotate-{token}", SESSION_CONFIG)
    only_here = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    configurations = chart_configurations(process, release=f"rotate-{token}", values={
        "webhook": {"skipPodsWithoutHostAccess": False, "namespaceSelector": only_here}})  # fmt: skip
    first_ca = process.ca
    load: Load | None = None
    timeline: list[str] = []
    counts: list[int] = []  # creates answered at each mark: the load ran through every step
    try:
        process.start()
        register(api_client, configurations)

        def called() -> bool:
            probe = f"probe-{secrets.token_hex(2)}"
            core_v1.create_namespaced_pod(namespace, plain_pod(probe), dry_run="All")
            return any(e.get("name") == probe for e in process.reviews())

        wait_for(called, timeout=30, message="the apiserver to call the rotating webhook")
        started = time.monotonic()
        running = load = Load(control_plane, namespace, CREATES).start()

        def mark(what: str) -> None:
            counts.append(running.done)
            timeline.append(f"{time.monotonic() - started:6.1f} s  {running.done:5} creates  {what}")

        wait_for(running.reached(CREATES // 10), timeout=60, interval=0.05, message="the load to start")
        mark("rotation 1: a new leaf of the same CA, key first")
        write_half_then_whole(process, certs.issue_serving_cert(first_ca, "immutable-os-webhook", "e2e",
                                                                ips=[LOOPBACK]))  # fmt: skip
        mark("rotation 1: served")
        second_ca = certs.generate_ca(f"immutable-os-e2e-rotate-{token}-ca2")
        set_ca_bundle(api_client, configurations, first_ca.cert_pem + second_ca.cert_pem)
        mark("rotation 2: caBundle carries both CAs")
        time.sleep(CA_BUNDLE_PROPAGATION_SECONDS)
        write_half_then_whole(process, certs.issue_serving_cert(second_ca, "immutable-os-webhook", "e2e",
                                                                ips=[LOOPBACK]))  # fmt: skip
        mark("rotation 2: a leaf of the new CA served")
        time.sleep(CA_BUNDLE_PROPAGATION_SECONDS)
        set_ca_bundle(api_client, configurations, second_ca.cert_pem)
        mark("rotation 2: caBundle narrowed to the new CA")
        time.sleep(CA_BUNDLE_PROPAGATION_SECONDS)  # creates keep going through the narrowed bundle
        running.join()
        mark("load done")
    finally:
        if load is not None:
            load.join()
        unregister(api_client, configurations)
        process.stop()
    assert load is not None
    reviewed = [e for e in process.reviews() if e.get("namespace") == namespace]
    print(f"\n{load.done} pod creates from {CREATORS} threads, {len(reviewed)} reviews answered:")
    print("\n".join(timeline))
    assert load.done >= CREATES
    assert all(a < b for a, b in itertools.pairwise(counts)), timeline
    assert load.failures == [], load.failures[:3]
    assert len(reviewed) >= 2 * load.done  # mutate and validate, for every create
