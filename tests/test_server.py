"""Tests for webhook.adapters.http (app, service, edge): the running app over real TLS, judged by what the
apiserver would receive.

Most cases run uvicorn in a thread of this process (so a test can monkeypatch the core) on a free 127.0.0.1
port; `python -m webhook serve` runs as a subprocess where a real process matters (CLI wiring, JSON logs
on stdout, SIGTERM). Clients are httpx (or raw TLS sockets) trusting the test CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
import yaml
from cryptography import x509

from tests.builders import OS_SKU, host_path, review_for, set_field, tweak, wrap
from tests.pki import HOST, Pki
from tests.serving import (
    ACL_POD,
    CLEAN_POD,
    HOST_PATH_POD,
    JSON,
    WARNING_PREFIX,
    WRITES_USR,
    NotReady,
    Process,
    Running,
    assert_admission_review,
    decoded_patch,
    post,
    running,
    sample,
    service_for,
    serving,
)
from webhook.adapters.files import load_config
from webhook.adapters.http import edge, service
from webhook.core.config import NAMESPACE_MODE_LABEL, Config

STREAM_REQUESTS = 300
STREAM_WORKERS = 4


# --- PKI and the shared in-process server --------------------------------------------------------------


def dry_run(review: dict[str, Any]) -> dict[str, Any]:
    return {**review, "request": {**review["request"], "dryRun": True}}


# --- /mutate -------------------------------------------------------------------------------------------


async def test_mutate_steers_an_unconstrained_host_path_pod(app: Running) -> None:
    review = review_for(HOST_PATH_POD, uid="a1b2c3d4-0000-4000-8000-000000000001")
    response = await post(app, "mutate", review)
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(HOST_PATH_POD, decoded_patch(response))
    terms = patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions = [e for t in terms["nodeSelectorTerms"] for e in t["matchExpressions"]]
    assert expressions == [{"key": "kubernetes.azure.com/os-sku-requested", "operator": "NotIn",
                            "values": ["AzureContainerLinux", "AzureLinuxOSGuard"]}]  # fmt: skip
    assert response["warnings"] and "steered away from pool acl" in response["warnings"][0]
    assert response["auditAnnotations"]["decision"] == "steered"
    assert "immutable-os.io/steered" in patched["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("Deployment", "/spec/template/"),
        ("DaemonSet", "/spec/template/"),
        ("StatefulSet", "/spec/template/"),
        ("CronJob", "/spec/jobTemplate/spec/template/"),
    ],
    ids=["Deployment", "DaemonSet", "StatefulSet", "CronJob"],
)
async def test_mutate_patches_the_pod_template_of_workloads(app: Running, kind: str, prefix: str) -> None:
    workload = wrap(tweak(WRITES_USR), kind)
    response = await post(app, "mutate", review_for(workload))
    patch = decoded_patch(response)
    assert all(op["path"].startswith(prefix) for op in patch), [op["path"] for op in patch]
    patched = jsonpatch.apply_patch(workload, patch)
    assert patched != workload
    # What the apiserver stores after mutation is admitted by validation.
    assert (await post(app, "validate", review_for(patched)))["allowed"] is True


@pytest.mark.parametrize(
    "pod",
    [CLEAN_POD, ACL_POD, tweak(host_path("/var/log"), set_field("nodeSelector", {OS_SKU: "Ubuntu"}))],
    ids=["clean", "acl-only", "general-only"],
)
async def test_mutate_never_denies_and_patches_only_when_steering(app: Running, pod: dict[str, Any]) -> None:
    response = await post(app, "mutate", review_for(pod))
    assert response["allowed"] is True
    assert "patch" not in response and "patchType" not in response


async def test_mutating_a_steered_pod_again_changes_nothing(app: Running) -> None:
    first = await post(app, "mutate", review_for(HOST_PATH_POD))
    steered = jsonpatch.apply_patch(HOST_PATH_POD, decoded_patch(first))
    again = await post(app, "mutate", review_for(steered))
    assert "patch" not in again


# --- /validate -----------------------------------------------------------------------------------------


async def test_validate_denies_a_pod_pinned_to_acl_in_enforce(app: Running) -> None:
    response = await post(app, "validate", review_for(ACL_POD))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    for named in ("host-path", "spec.volumes[0].hostPath.path", "pool acl", "Pod default/app"):
        assert named in message, (named, message)
    assert "warnings" not in response and "patch" not in response
    assert response["auditAnnotations"]["decision"] == "denied"


@pytest.mark.parametrize("pod", [HOST_PATH_POD, ACL_POD, CLEAN_POD], ids=["steerable", "acl-only", "clean"])
async def test_validate_never_returns_a_patch(app: Running, pod: dict[str, Any]) -> None:
    response = await post(app, "validate", review_for(pod))
    assert "patch" not in response and "patchType" not in response


@pytest.mark.parametrize("endpoint", ["mutate", "validate"])
@pytest.mark.parametrize("pod", [HOST_PATH_POD, ACL_POD], ids=["steerable", "acl-only"])
async def test_dry_run_gets_the_same_answer(app: Running, endpoint: str, pod: dict[str, Any]) -> None:
    review = review_for(pod)
    assert await post(app, endpoint, dry_run(review)) == await post(app, endpoint, review)


async def test_config_file_mode_warn_allows_with_warnings(pki: Pki, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("mode: warn\n")
    async with running(service_for(load_config(str(config_file))), pki) as r:
        response = await post(r, "validate", review_for(ACL_POD))
    assert response["allowed"] is True
    assert any("pool acl" in w for w in response["warnings"])
    assert response["auditAnnotations"] == {
        **response["auditAnnotations"],
        "decision": "warned",
        "mode": "warn",
    }


# --- bad input at the HTTP edge ------------------------------------------------------------------------


def review_without(*path: str) -> bytes:
    review: Any = review_for(ACL_POD)
    target = review
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(review).encode()


def review_with(change: Callable[[dict[str, Any]], None]) -> bytes:
    review = review_for(ACL_POD)
    change(review)
    return json.dumps(review).encode()


BAD_REQUESTS = [
    # id, content-type header (None: absent), body, status, `field` of the JSON error
    ("text-plain", {"content-type": "text/plain"}, review_with(lambda r: None), 415, "Content-Type"),
    ("no-content-type", {}, review_with(lambda r: None), 415, "Content-Type"),
    ("not-json", JSON, b"{not json", 400, "<body>"),
    ("invalid-utf8", JSON, b'{"apiVersion": "\xff\xfe"}', 400, "<body>"),
    ("empty-body", JSON, b"", 400, "<body>"),
    ("json-array", JSON, b"[]", 400, "<body>"),
    ("json-null", JSON, b"null", 400, "<body>"),
    ("v1beta1", JSON, review_with(lambda r: r.update(apiVersion="admission.k8s.io/v1beta1")), 400, "apiVersion"),
    ("wrong-kind", JSON, review_with(lambda r: r.update(kind="Pod")), 400, "apiVersion"),
    ("no-request", JSON, review_without("request"), 400, "request"),
    ("request-not-object", JSON, review_with(lambda r: r.update(request=[])), 400, "request"),
    ("no-uid", JSON, review_without("request", "uid"), 400, "request.uid"),
    ("empty-uid", JSON, review_with(lambda r: r["request"].update(uid="")), 400, "request.uid"),
    ("uid-not-string", JSON, review_with(lambda r: r["request"].update(uid=42)), 400, "request.uid"),
    ("no-kind", JSON, review_without("request", "kind"), 400, "request.kind"),
    ("no-operation", JSON, review_without("request", "operation"), 400, "request.operation"),
    ("object-not-object", JSON, review_with(lambda r: r["request"].update(object="pod")), 400, "request.object"),
    ("create-without-object", JSON, review_with(lambda r: r["request"].update(object=None)), 400, "request.object"),
    ("surrogate-api-version", JSON, b'{"apiVersion": "\\ud800", "kind": "AdmissionReview"}', 400, "apiVersion"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
@pytest.mark.parametrize("endpoint", ["mutate", "validate"])
async def test_bad_input_is_a_json_error_naming_the_field(
    app: Running, endpoint: str, headers: dict[str, str], body: bytes, status: int, field: str
) -> None:
    answer = await app.client.post(f"/{endpoint}", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert error["field"] == field
    assert error["error"] and isinstance(error["fix"], str)


async def test_body_over_the_cap_with_a_content_length_is_413(app: Running) -> None:
    answer = await app.client.post("/validate", content=b" " * (edge.MAX_BODY_BYTES + 1), headers=JSON)
    assert answer.status_code == 413
    assert answer.json()["field"] == "<body>"


async def test_a_content_length_over_the_cap_is_refused_on_the_headers_alone(app: Running) -> None:
    reader, writer = await asyncio.open_connection(
        HOST, app.port, ssl=app.pki.client_context(), server_hostname=HOST
    )
    try:
        writer.write(
            b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {edge.MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )  # and no body at all: the edge must not wait to read (or buffer) it
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 413 "), head
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def chunks(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A streamed body of `total` bytes: httpx sends it chunked, with no Content-Length at all."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


@pytest.mark.parametrize(
    ("total", "status"),
    [(edge.MAX_BODY_BYTES + 1, 413), (edge.MAX_BODY_BYTES * 2, 413), (edge.MAX_BODY_BYTES, 400)],
    ids=["one-byte-over", "twice-the-cap", "at-the-cap"],
)
async def test_chunked_body_without_content_length_is_capped_while_streaming(
    app: Running, total: int, status: int
) -> None:
    answer = await app.client.post("/validate", content=chunks(total), headers=JSON)
    assert "content-length" not in answer.request.headers
    assert answer.request.headers["transfer-encoding"] == "chunked"
    assert answer.status_code == status  # at the cap it is read, and is (whitespace) not JSON
    assert answer.json()["field"] == "<body>"


async def test_a_valid_review_sent_chunked_is_answered(app: Running) -> None:
    body = json.dumps(review_for(ACL_POD)).encode()

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    answer = await app.client.post("/validate", content=slowly(), headers=JSON)
    assert answer.status_code == 200
    assert assert_admission_review(answer.json(), review_for(ACL_POD)["request"]["uid"])["allowed"] is False


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/mutate", 405), ("GET", "/validate", 405), ("PUT", "/mutate", 405), ("POST", "/healthz", 405),
     ("POST", "/", 404), ("POST", "/admission", 404), ("GET", "/mutate-v2", 404), ("POST", "/mutate/", 404)],
    ids=["get-mutate", "get-validate", "put-mutate", "post-healthz", "root", "unknown", "near-miss",
         "trailing-slash-no-redirect"],
)  # fmt: skip
async def test_wrong_method_or_path(app: Running, method: str, path: str, status: int) -> None:
    answer = await app.client.request(method, path, json=review_for(ACL_POD))
    assert answer.status_code == status
    assert answer.json()["field"] == "<path>" and path in answer.json()["error"]


# --- a crash inside judging is still an answer ---------------------------------------------------------


def crash(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("config", "allowed"),
    [(Config(), True), (Config.from_dict({"onInternalError": "deny"}), False)],
    ids=["allow-by-default", "deny"],
)
@pytest.mark.parametrize("endpoint", ["mutate", "validate"])
async def test_a_crash_in_judge_answers_per_on_internal_error(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, config: Config, allowed: bool, endpoint: str
) -> None:
    monkeypatch.setattr(service, "answer", crash)
    async with running(service_for(config), pki) as r:
        review = review_for(HOST_PATH_POD, uid="crash-0001")
        response = await post(r, endpoint, review)
        metrics = await r.client.get("/metrics")
    assert response["allowed"] is allowed
    assert "patch" not in response
    if allowed:
        assert response["warnings"] == [f"{WARNING_PREFIX}not judged: internal error (RuntimeError)"]
    else:
        assert "could not judge: internal error (RuntimeError)" in response["status"]["message"]
    assert sample(metrics.text, "immutable_os_webhook_internal_errors_total", endpoint=endpoint) == 1


MALFORMED = [
    # id, pod, the field the answer names
    ("volumes-not-a-list", tweak(set_field("volumes", "not-a-list")), "spec.volumes"),
    ("hostPID-not-bool", tweak(host_path("/var/log"), set_field("hostPID", "yes")), "spec.hostPID"),
    ("spec-not-object", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": []}, "spec"),
    ("container-a-string", tweak(set_field("containers", ["app"])), "spec.containers[0]"),
    ("hostPath-without-path", tweak(set_field("volumes", [{"name": "h", "hostPath": {}}])), "spec.volumes[0].hostPath.path"),
    ("huge-bad-value", tweak(host_path("/usr"), set_field("hostNetwork", {"a": "x" * 100_000})), "spec.hostNetwork"),
    # Found by the fuzzer (tests/fuzzing.py): a hostPath type that is no string was an internal error.
    ("hostPath-type-a-list", tweak(host_path("/var/log"), lambda s: s["volumes"][0]["hostPath"].update(type=["x"])), "spec.volumes[0].hostPath.type"),
    ("hostPath-type-an-object", tweak(host_path("/var/log"), lambda s: s["volumes"][0]["hostPath"].update(type={})), "spec.volumes[0].hostPath.type"),
    # "false" as a string would have read as read-only: a writable mount judged as a read.
    ("readOnly-a-string", tweak(host_path("/usr/local/bin"), lambda s: s["containers"][0]["volumeMounts"][0].update(readOnly="false")), "spec.containers[0].volumeMounts[0].readOnly"),
]  # fmt: skip


@pytest.mark.parametrize("endpoint", ["mutate", "validate"])
@pytest.mark.parametrize(("pod", "field_name"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_a_pod_spec_that_cannot_be_read_is_refused_400_naming_the_field_never_waved_through(
    app: Running, pod: dict[str, Any], field_name: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As Pod Security Admission answers an object it cannot decode: denied, code 400 BadRequest, the
    message naming the field (and short, whatever the value), not "allowed, not judged" and no error
    record (it is the client's error, not ours)."""
    response = await post(app, endpoint, review_for(pod))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    assert status["message"].startswith(
        f"Pod default/{pod['metadata']['name']} cannot be judged: {field_name}: "
    )
    assert len(status["message"]) < 300
    assert response["auditAnnotations"]["decision"] == "invalid"
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


@pytest.mark.parametrize(("mode", "warned"), [("warn", True), ("audit", False)])
async def test_in_warn_and_audit_a_pod_spec_that_cannot_be_read_is_admitted_and_said_or_recorded(
    pki: Pki, mode: str, warned: bool
) -> None:
    review = review_for(tweak(set_field("volumes", "not-a-list")))
    async with running(service_for(Config.from_dict({"mode": mode})), pki) as r:
        mutated = await post(r, "mutate", review)
        validated = await post(r, "validate", review)
    assert mutated["allowed"] is True and "patch" not in mutated and "warnings" not in mutated
    assert validated["allowed"] is True and validated["auditAnnotations"]["decision"] == "invalid"
    assert validated["auditAnnotations"]["invalid"].startswith("spec.volumes: expected a list")
    expected = [
        f"{WARNING_PREFIX}cannot be judged, enforce mode would deny it: spec.volumes: expected a list, got str"
    ]
    assert validated.get("warnings") == (expected if warned else None)


async def test_an_exempt_namespace_is_never_refused_for_the_shape_of_its_objects(pki: Pki) -> None:
    review = review_for(tweak(set_field("volumes", "not-a-list")))
    config = Config.from_dict({"exemptions": {"namespaces": ["default"]}})
    async with running(service_for(config), pki) as r:
        response = await post(r, "validate", review)
    assert response["allowed"] is True and response["auditAnnotations"] == {"exempt": "namespace"}


def without_metadata(pod: dict[str, Any], metadata: Any) -> dict[str, Any]:
    """The review of `pod` with its object's metadata removed (`...`) or replaced by `metadata`."""
    review = review_for(copy.deepcopy(pod))
    obj = review["request"]["object"]
    if metadata is ...:
        del obj["metadata"]
    else:
        obj["metadata"] = metadata
    return review


ODD_METADATA = [..., None, [], {}]
ODD_METADATA_IDS = ["absent", "null", "empty-list", "empty-object"]


@pytest.mark.parametrize("metadata", ODD_METADATA, ids=ODD_METADATA_IDS)
async def test_a_pod_without_usable_metadata_is_judged_not_waved_through(app: Running, metadata: Any) -> None:
    """No metadata (or null, or []) is no reason to answer "allowed, not judged": the pod is steered
    (the patch adds the metadata it annotates, and applies), and unsteered it is denied."""
    review = without_metadata(HOST_PATH_POD, metadata)
    mutated = await post(app, "mutate", review)
    assert mutated["auditAnnotations"]["decision"] == "steered", mutated
    steered = jsonpatch.apply_patch(review["request"]["object"], decoded_patch(mutated))
    assert "immutable-os.io/steered" in steered["metadata"]["annotations"]
    assert (await post(app, "validate", review_for(steered)))["allowed"] is True
    validated = await post(app, "validate", review)
    assert validated["allowed"] is False and validated["auditAnnotations"]["decision"] == "denied"
    pinned = await post(app, "validate", without_metadata(ACL_POD, metadata))
    assert pinned["allowed"] is False


async def test_strings_that_are_not_utf8_encodable_are_echoed_not_a_500(app: Running) -> None:
    # JSON may escape a lone surrogate; Python decodes it, and a careless UTF-8 encoder then raises.
    review = review_for(ACL_POD)
    body = json.dumps(review).replace(review["request"]["uid"], "\\ud800-uid").replace('"app"', '"\\udfff"')
    answer = await app.client.post("/validate", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    response = answer.json()["response"]
    assert response["uid"] == "\ud800-uid" and response["allowed"] is False


# --- health, readiness, metrics ------------------------------------------------------------------------


async def test_healthz_and_readyz_with_a_static_source(app: Running) -> None:
    assert (await app.client.get("/healthz")).status_code == 200
    assert (await app.client.get("/readyz")).status_code == 200


async def test_readyz_is_503_until_the_source_is_ready(pki: Pki) -> None:
    async with running(service_for(source=NotReady()), pki) as r:
        assert (await r.client.get("/healthz")).status_code == 200
        ready = await r.client.get("/readyz")
        # Not ready means a stale inventory: reviews are still answered, by label evidence alone.
        response = await post(r, "validate", review_for(ACL_POD))
    assert ready.status_code == 503 and "waiting" in ready.json()["status"]
    assert response["allowed"] is False


async def test_metrics_count_reviews_and_describe_the_inventory(pki: Pki) -> None:
    async with running(service_for(), pki) as app:  # counters of its own
        await post(app, "mutate", review_for(HOST_PATH_POD))
        await post(app, "validate", review_for(ACL_POD))
        await post(app, "validate", review_for(ACL_POD))
        await post(app, "validate", review_for(CLEAN_POD))
        await app.client.post("/validate", content=b"nope", headers=JSON)
        answer = await app.client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    reviews = "immutable_os_webhook_reviews_total"
    assert sample(text, reviews, endpoint="mutate", decision="steered", mode="enforce") == 1
    assert sample(text, reviews, endpoint="validate", decision="denied", mode="enforce") == 2
    assert sample(text, reviews, endpoint="validate", decision="clean", mode="enforce") == 1
    assert sample(text, "immutable_os_webhook_bad_requests_total", reason="json") == 1
    assert sample(text, "immutable_os_webhook_findings_total", endpoint="validate", check="host-path") == 2
    bucket = "immutable_os_webhook_review_duration_seconds_bucket"
    assert sample(text, bucket, endpoint="validate", le="0.00025") is not None
    assert sample(text, bucket, endpoint="validate", le="+Inf") == 3
    assert sample(text, "immutable_os_webhook_inventory_nodes") == 5
    assert sample(text, "immutable_os_webhook_inventory_pools", **{"class": "general"}) == 1
    assert sample(text, "immutable_os_webhook_inventory_pools", **{"class": "immutable"}) == 2
    assert "_created" not in text


# --- certificate rotation under a stream of reviews ----------------------------------------------------


def served_serial(response: httpx.Response) -> int:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number


async def test_rotating_the_serving_cert_under_a_stream_of_reviews_fails_nothing(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    old_serial = pki.serving.certificate.serial_number
    new = pki.issue()
    with serving(service_for(), pki, cert_check_seconds=0.02) as served:
        fresh = served.client(limits=httpx.Limits(max_keepalive_connections=0))
        done = 0
        serials: list[int] = []
        failures: list[str] = []

        async def worker(index: int) -> None:
            nonlocal done
            for n in range(STREAM_REQUESTS // STREAM_WORKERS):
                endpoint = "mutate" if n % 2 else "validate"
                review = review_for(HOST_PATH_POD, uid=f"stream-{index}-{n}")
                try:
                    answer = await fresh.post(f"/{endpoint}", json=review)
                    assert answer.status_code == 200, answer.status_code
                    assert answer.json()["response"]["uid"] == review["request"]["uid"]
                    serials.append(served_serial(answer))
                except (httpx.HTTPError, ssl.SSLError, AssertionError) as error:
                    failures.append(repr(error))
                done += 1

        async def rotate() -> None:
            for _ in range(5_000):  # bounded: the workers pass a third of the stream long before
                if done >= STREAM_REQUESTS // 3:
                    break
                await asyncio.sleep(0.002)
            pki.install(new)

        async with fresh:
            await asyncio.wait_for(
                asyncio.gather(rotate(), *(worker(i) for i in range(STREAM_WORKERS))), timeout=60
            )
            after = await fresh.get("/healthz")
    assert failures == []
    assert len(serials) == STREAM_REQUESTS
    assert set(serials) == {old_serial, new.certificate.serial_number}
    assert serials[-20:] == [new.certificate.serial_number] * 20
    assert served_serial(after) == new.certificate.serial_number


# --- `python -m webhook serve` as a process ------------------------------------------------------------


@pytest.fixture(scope="module")
def process(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One serve process for the module: enforce by config, two namespaces relaxed by label, and its own
    namespace exempt."""
    files = tmp_path_factory.mktemp("serve")
    (files / "config.yaml").write_text("mode: enforce\nonInternalError: allow\n")
    labels = {"warned": {NAMESPACE_MODE_LABEL: "warn"}, "audited": {NAMESPACE_MODE_LABEL: "audit"}}
    (files / "namespaces.yaml").write_text(yaml.safe_dump(labels))
    proc = Process(
        pki, "--example-nodes", "--config", str(files / "config.yaml"),
        "--namespace-labels", str(files / "namespaces.yaml"), "--own-namespace", "webhook-system",
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def judged(process: Process, endpoint: str, review: dict[str, Any]) -> dict[str, Any]:
    answer = process.client.post(f"/{endpoint}", json=review)
    assert answer.status_code == 200, answer.text
    return assert_admission_review(answer.json(), review["request"]["uid"])


def in_namespace(namespace: str, pod: dict[str, Any] = ACL_POD) -> dict[str, Any]:
    return {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}


MODES = [
    # id, namespace, allowed, warned, audit annotations (beyond findings and lands-on)
    ("enforce", "default", False, False, {"decision": "denied", "mode": "enforce"}),
    ("warn", "warned", True, True, {"decision": "warned", "mode": "warn"}),
    ("audit", "audited", True, False, {"decision": "audited", "mode": "audit"}),
    ("own-namespace-exempt", "webhook-system", True, False, {"exempt": "namespace"}),
]


@pytest.mark.parametrize(
    ("namespace", "allowed", "warned", "audit"), [m[1:] for m in MODES], ids=[m[0] for m in MODES]
)
def test_serve_modes_by_namespace_label(
    process: Process, namespace: str, allowed: bool, warned: bool, audit: dict[str, str]
) -> None:
    review = review_for(in_namespace(namespace), uid=f"mode-{namespace}")
    response = judged(process, "validate", review)
    assert response["allowed"] is allowed
    assert ("warnings" in response) is warned
    if warned:
        assert any("pool acl" in w for w in response["warnings"])
    assert audit.items() <= response["auditAnnotations"].items()
    assert "patch" not in response
    assert judged(process, "validate", dry_run(review)) == response


def test_serve_logs_one_json_line_per_judged_review(process: Process) -> None:
    review = review_for(in_namespace("default"), uid="log-line-0001")
    judged(process, "validate", review)
    clean = review_for(in_namespace("default", CLEAN_POD), uid="log-line-clean")
    judged(process, "validate", clean)
    lines = process.log_lines(lambda entry: entry.get("uid") == "log-line-clean")
    assert all(isinstance(entry, dict) and entry["level"] and entry["logger"] for entry in lines)
    mine = [entry for entry in lines if entry.get("uid") == "log-line-0001"]
    assert len(mine) == 1
    assert {k: mine[0][k] for k in ("uid", "kind", "namespace", "name", "decision", "findings", "endpoint")} == {
        "uid": "log-line-0001", "kind": "Pod", "namespace": "default", "name": "app", "decision": "denied",
        "findings": ["host-path:spec.volumes[0].hostPath.path"], "endpoint": "validate",
    }  # fmt: skip
    assert mine[0]["logger"] == "webhook.review" and mine[0]["ms"] >= 0
