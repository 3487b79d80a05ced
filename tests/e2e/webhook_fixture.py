"""The real webhook (`python -m webhook serve`) as a local process, and its registration with the apiserver.

`WebhookProcess` makes a CA and a serving certificate for 127.0.0.1 with `webhook.adapters.certs`, writes a config
file, runs the server against the test apiserver's admin kubeconfig on a free loopback port and waits for
``/readyz`` (the node and namespace mirrors have synced). `chart_configurations` renders the Helm chart's own
Mutating- and ValidatingWebhookConfiguration for it (by URL with its caBundle: what the chart ships, rules,
namespace exclusions and host-access matchConditions included); `webhook_entry` builds a single hand-made
webhook for the tests of failure policies; `register` creates configurations and `unregister` deletes
them and waits until they are gone.

Plain Python like `harness`; the pytest fixtures that use it are in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client as k8s

from webhook.adapters import certs

from .harness import (
    LOOPBACK,
    REPO_ROOT,
    ControlPlane,
    _die_with_parent,
    find_assets,
    free_port,
    tail,
    wait_for,
)

CHART = REPO_ROOT / "charts" / "immutable-os-webhook"
#: The session's configurations are the chart's, rendered for this release (the release namespace is never
#: judged, as the chart says).
RELEASE = "immutable-os-e2e"
RELEASE_NAMESPACE = "immutable-os-e2e-system"
#: The chart's webhook names (the apiserver prefixes audit annotation keys with them).
MUTATING_PODS, MUTATING_WORKLOADS = "steer-pods.immutable-os.io", "steer-workloads.immutable-os.io"
VALIDATING_PODS, VALIDATING_WORKLOADS = "pods.immutable-os.io", "workloads.immutable-os.io"
#: The name of the chart's configuration objects for the release.
CONFIGURATION_NAME = f"{RELEASE}-immutable-os-webhook"

EXEMPT_GROUP = "e2e-breakglass"
EXEMPT_USER = "e2e-exempt-user"
EXEMPT_NAMESPACE = "e2e-exempt"

#: What the session webhook runs with.
SESSION_CONFIG: dict[str, Any] = {
    "mode": "enforce",
    "exemptions": {
        "groups": [EXEMPT_GROUP],
        "usernames": [EXEMPT_USER],
        "namespaces": [EXEMPT_NAMESPACE],
    },
}

#: For hand-made webhooks (failure-policy tests): every kind that carries a pod spec, CREATE and UPDATE.
RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"], "scope": "Namespaced"},
    {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["deployments", "daemonsets", "statefulsets", "replicasets"], "scope": "Namespaced"},
    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["jobs", "cronjobs"], "scope": "Namespaced"},
]  # fmt: skip

#: Never judge kube-system: the webhook must not be able to block the control plane's own pods.
NOT_KUBE_SYSTEM: dict[str, Any] = {
    "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
    ]
}


class WebhookError(RuntimeError):
    """The webhook process did not start or did not become ready; carries the tail of its log."""


class WebhookProcess:
    """One `python -m webhook serve` process on 127.0.0.1 with its own CA, serving pair and config (or,
    with `same_pki_as`, another process's: replicas behind one address)."""

    def __init__(
        self,
        control_plane: ControlPlane,
        name: str,
        config: Mapping[str, Any],
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        kubeconfig: Path | None = None,
        extra_args: Sequence[str] = (),
        same_pki_as: WebhookProcess | None = None,
    ) -> None:
        """`kubeconfig` defaults to the control plane's admin; `extra_args` go to `serve` as they are."""
        self.control_plane = control_plane
        self.name = name
        self.kubeconfig = kubeconfig or control_plane.kubeconfig_path
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.dir = control_plane.tmp_dir / f"webhook-{name}"
        self.dir.mkdir(mode=0o700)
        if same_pki_as is None:
            self.ca = certs.generate_ca(f"immutable-os-e2e-{name}-ca")
            serving = certs.issue_serving_cert(self.ca, "immutable-os-webhook", "e2e", ips=[LOOPBACK])
            cert_pem, key_pem = serving.cert_pem, serving.key_pem
        else:
            self.ca = same_pki_as.ca
            cert_pem, key_pem = same_pki_as.cert_path.read_bytes(), same_pki_as.key_path.read_bytes()
        self.ca_path = self.dir / "ca.crt"
        self.ca_path.write_bytes(self.ca.cert_pem)
        self.cert_path = self.dir / "tls.crt"
        self.cert_path.write_bytes(cert_pem)
        self.key_path = self.dir / "tls.key"
        self.key_path.write_bytes(key_pem)
        self.key_path.chmod(0o600)
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)))
        self.port = free_port()
        self.url = f"https://{LOOPBACK}:{self.port}"
        self.log_path = control_plane.log_dir / f"webhook-{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def ca_bundle(self) -> str:
        return certs.ca_bundle_b64(self.ca.cert_pem)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "webhook", "serve",
            f"--cert-file={self.cert_path}", f"--key-file={self.key_path}",
            f"--host={LOOPBACK}", f"--port={self.port}",
            f"--kubeconfig={self.kubeconfig}", f"--config={self.config_path}",
            "--log-level=debug",  # tests read every review from the log, clean ones included
            *self.extra_args,
        ]  # fmt: skip

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> WebhookProcess:
        """Start the server and wait for /readyz (bounded); stops it and raises `WebhookError` if not."""
        if self.alive():
            return self
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("ab")
        self._popen = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            preexec_fn=_die_with_parent,
        )

        def ready() -> bool:
            if not self.alive():
                raise WebhookError(f"webhook {self.name} exited:\n{self.logs()}")
            return self.get("/readyz") == 200

        try:
            wait_for(
                ready, timeout=self.startup_timeout, interval=0.1, message=f"webhook {self.name} /readyz"
            )
        except WebhookError:
            self.stop()
            raise
        except TimeoutError as exc:
            self.stop()
            raise WebhookError(f"{exc}; last lines of its log:\n{self.logs()}") from exc
        return self

    def terminate(self) -> None:
        """SIGTERM, without waiting: the server drains, then exits (`exited()` says when)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)

    def exit_code(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self._popen.poll() if self._popen is not None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout`; safe to call twice."""
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                popen.wait(timeout=self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the serving certificate against our CA and the IP SAN, as the apiserver does."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def get(self, path: str, timeout: float = 2.0) -> int:
        """The HTTP status of a GET (0 when the connection fails)."""
        try:
            with urllib.request.urlopen(
                f"{self.url}{path}", timeout=timeout, context=self.ssl_context()
            ) as r:
                status: int = r.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5, context=self.ssl_context()) as resp:
            body: bytes = resp.read()
            return body.decode()

    def logs(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def reviews(self) -> list[dict[str, Any]]:
        """The JSON review log lines the server wrote so far."""
        return self.log_entries("review")

    def log_entries(self, message: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines the server wrote so far (those whose msg is `message`, if given)."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and (message is None or entry.get("msg") == message):
                    entries.append(entry)
        return entries

    def post(self, path: str, body: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """POST JSON (an AdmissionReview to /mutate or /validate) the way the apiserver does; the answer."""
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer


def webhook_entry(
    name: str,
    url: str,
    ca_bundle: str,
    *,
    failure_policy: str = "Fail",
    namespace_selector: Mapping[str, Any] = NOT_KUBE_SYSTEM,
    object_selector: Mapping[str, Any] | None = None,
    mutating: bool = False,
) -> dict[str, Any]:
    """One webhook of a configuration: by URL with `ca_bundle`, admissionReviewVersions v1, no side
    effects, 5 s timeout, the `RULES`; `reinvocationPolicy: IfNeeded` when `mutating`."""
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "namespaceSelector": dict(namespace_selector),
        "objectSelector": dict(object_selector or {}),
        "rules": RULES,
    }
    if mutating:
        hook["reinvocationPolicy"] = "IfNeeded"
    return hook


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merged(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
            else value
        )
    return out


def chart_configurations(
    webhook: WebhookProcess, *, release: str = RELEASE, values: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], ...]:
    """The chart's MutatingWebhookConfiguration and ValidatingWebhookConfiguration for `webhook`, as
    `helm template` renders them with `webhook.url` and the process's caBundle (`values` merged over)."""
    helm = find_assets(None, ["helm"]) / "helm"
    chosen = _merged({"deployment": {"enabled": False}, "webhook": {"url": webhook.url},
                      "certificates": {"mode": "existingSecret", "existingSecret": {"caBundle": webhook.ca_bundle}}},
                     values or {})  # fmt: skip
    values_file = webhook.dir / f"values-{release}.json"
    values_file.write_text(json.dumps(chosen))  # JSON: YAML would read an all-digit hex string as a number
    rendered = subprocess.run(
        [str(helm), "template", release, str(CHART), "-n", RELEASE_NAMESPACE, "-f", str(values_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if rendered.returncode != 0:
        raise WebhookError(f"helm template failed:\n{rendered.stderr}")
    kinds = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    found = tuple(d for d in yaml.safe_load_all(rendered.stdout) if d and d.get("kind") in kinds)
    assert [d["kind"] for d in found] == list(kinds), [d["kind"] for d in found]
    return found


def register(api: k8s.ApiClient, configurations: Sequence[Mapping[str, Any]]) -> None:
    admission = k8s.AdmissionregistrationV1Api(api)
    for conf in configurations:
        if conf["kind"] == "MutatingWebhookConfiguration":
            admission.create_mutating_webhook_configuration(dict(conf))
        else:
            admission.create_validating_webhook_configuration(dict(conf))


def unregister(api: k8s.ApiClient, configurations: Sequence[Mapping[str, Any]]) -> None:
    """Delete the configurations (missing ones are fine) and wait until the API no longer has them."""
    admission = k8s.AdmissionregistrationV1Api(api)
    for conf in configurations:
        name = conf["metadata"]["name"]
        delete = (
            admission.delete_mutating_webhook_configuration
            if conf["kind"] == "MutatingWebhookConfiguration"
            else admission.delete_validating_webhook_configuration
        )
        try:
            delete(name)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        names = {i.metadata.name for i in admission.list_mutating_webhook_configuration().items}
        names |= {i.metadata.name for i in admission.list_validating_webhook_configuration().items}
        return not names & {c["metadata"]["name"] for c in configurations}

    wait_for(gone, timeout=10, message="webhook configurations to be deleted")


def pool_nodes(core: k8s.CoreV1Api, pool: str) -> list[str]:
    return sorted(n.metadata.name for n in core.list_node(label_selector=f"agentpool={pool}").items)


@dataclass(frozen=True)
class SessionPools:
    """The session's node pools: general-purpose Ubuntu (2 nodes) and Azure Linux (1), Azure Container
    Linux (2), Azure Linux OS Guard (1), the last three with `os-sku: AzureLinux` (the OS family). Node
    names per pool, sorted."""

    general: str
    azlinux: str
    acl: str
    osguard: str
    nodes: dict[str, list[str]]

    @property
    def general_nodes(self) -> set[str]:
        return {*self.nodes[self.general], *self.nodes[self.azlinux]}


@dataclass(frozen=True)
class SessionWebhook:
    process: WebhookProcess
    pools: SessionPools
    configurations: tuple[dict[str, Any], ...]


def api_message(exc: k8s.ApiException) -> str:
    """The message of the Status an ApiException carries ("" if the body is not a Status)."""
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except ValueError:
        return ""


def _probe_pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}], **spec},
    }


def wait_until_webhook_answers(core: k8s.CoreV1Api, namespace: str, immutable_pool: str, *,
                               timeout: float = 30.0) -> None:  # fmt: skip
    """Poll server-side dry-run creates until the apiserver calls both webhooks: a pod writing /usr pinned
    to an immutable pool is denied with our message, and the same pod unconstrained comes back steered."""
    writes_usr = {"volumes": [{"name": "host", "hostPath": {"path": "/usr/local/bin"}}]}
    denied = _probe_pod("e2e-probe-denied", {"nodeSelector": {"agentpool": immutable_pool}, **writes_usr})
    steered = _probe_pod("e2e-probe-steered", writes_usr)
    for probe in (denied, steered):
        probe["spec"]["containers"][0]["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]

    def validating() -> bool:
        try:
            core.create_namespaced_pod(namespace, denied, dry_run="All")
        except k8s.ApiException as exc:
            return exc.status == 403 and f'"{VALIDATING_PODS}" denied' in api_message(exc)
        return False

    def mutating() -> bool:
        pod = core.create_namespaced_pod(namespace, steered, dry_run="All")
        return "immutable-os.io/steered" in (pod.metadata.annotations or {})

    wait_for(validating, timeout=timeout, message="the apiserver to call the validating webhook")
    wait_for(mutating, timeout=timeout, message="the apiserver to call the mutating webhook")
