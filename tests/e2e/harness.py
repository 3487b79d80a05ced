"""A real Kubernetes control plane as local processes, for the end-to-end tests.

etcd and kube-apiserver (optionally kube-scheduler and kube-controller-manager) run as subprocesses on free
127.0.0.1 ports, the way controller-runtime's envtest runs them; the binaries come from the directory in
``KUBEBUILDER_ASSETS`` (``export "$(hack/control-plane.sh | tail -1)"`` builds them). Certificates are made
here with ``cryptography``. There are no kubelets: node pools are Node objects created through the API
with their status patched to Ready (`create_node_pool`), which is enough for the scheduler and the
DaemonSet controller.

Plain Python, no pytest: ``with ControlPlane() as cp: ...`` works from a REPL too.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests import aks
from tests.pki import CertificateAuthority, pem_key

T = TypeVar("T")

ASSETS_ENV = "KUBEBUILDER_ASSETS"
#: What `ControlPlane` needs; the scheduler, controller-manager and helm are checked when used.
REQUIRED_BINARIES: tuple[str, ...] = ("etcd", "kube-apiserver", "kubectl")
ALL_BINARIES: tuple[str, ...] = (*REQUIRED_BINARIES, "kube-scheduler", "kube-controller-manager", "helm")
LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane.sh"

#: Audit policy: Metadata for pods and the workload kinds (webhook audit annotations show up at this
#: level), nothing for the rest. Reads are left out to keep the log small.
DEFAULT_AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
            "resources": [
                {"group": "", "resources": ["pods"]},
                {
                    "group": "apps",
                    "resources": ["deployments", "daemonsets", "statefulsets", "replicasets"],
                },
                {"group": "batch", "resources": ["jobs", "cronjobs"]},
            ],
        },
        {"level": "None"},
    ],
}

#: Controllers that make no sense without kubelets. node-lifecycle would taint every node unreachable
#: after the grace period since nothing renews their leases.
DEFAULT_DISABLED_CONTROLLERS: tuple[str, ...] = ("node-lifecycle-controller",)


class ControlPlaneError(RuntimeError):
    """A process did not start or did not become ready; the message carries the tail of its log."""


class AssetsMissing(RuntimeError):
    """``KUBEBUILDER_ASSETS`` is unset or lacks a binary."""


# --------------------------------------------------------------------------------------------- utilities


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def find_assets(
    assets_dir: str | os.PathLike[str] | None = None, required: Sequence[str] = REQUIRED_BINARIES
) -> Path:
    """The binaries directory (argument, else ``$KUBEBUILDER_ASSETS``); raises `AssetsMissing` naming
    what is missing."""
    raw = os.fspath(assets_dir) if assets_dir is not None else os.environ.get(ASSETS_ENV, "")
    if not raw:
        raise AssetsMissing(f"{ASSETS_ENV} is not set")
    path = Path(raw)
    missing = [b for b in required if not os.access(path / b, os.X_OK)]
    if missing:
        raise AssetsMissing(f"{ASSETS_ENV}={path} lacks {', '.join(missing)}")
    return path


def pinned_kubernetes_version() -> str:
    """The Kubernetes release hack/control-plane.sh builds (``$K8S_VERSION`` overrides it there too)."""
    if os.environ.get("K8S_VERSION"):
        return os.environ["K8S_VERSION"]
    match = re.search(r'K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"', BUILD_SCRIPT.read_text())
    if not match:
        raise RuntimeError(f"no K8S_VERSION default in {BUILD_SCRIPT}")
    return match.group(1)


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `probe` until it returns something truthy (returned) or `timeout` seconds pass
    (`TimeoutError`). Exceptions from `probe` count as "not yet"; the last one is chained."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {text}") from last_exc
        time.sleep(interval)


def crd(
    group: str,
    kind: str,
    plural: str,
    schema: Mapping[str, Any],
    *,
    scope: str = "Namespaced",
    version: str = "v1",
) -> dict[str, Any]:
    """A CustomResourceDefinition body with one served, stored version."""
    return {
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}]},
    }  # fmt: skip


@contextlib.contextmanager
def installed_crds(
    api_client: k8s.ApiClient, bodies: Sequence[Mapping[str, Any]], what: str
) -> Iterator[None]:
    """Create the CRDs, wait until the apiserver serves them (Established), delete them on exit."""
    ext = k8s.ApiextensionsV1Api(api_client)
    names = [body["metadata"]["name"] for body in bodies]
    for body in bodies:
        ext.create_custom_resource_definition(body)

    def established() -> bool:
        for name in names:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout=30, message=f"{what} CRDs established")
    try:
        yield
    finally:
        for name in names:
            with contextlib.suppress(k8s.ApiException):
                ext.delete_custom_resource_definition(name)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ("" if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGKILL if the test process dies without calling stop()."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# -------------------------------------------------------------------------------------------------- PKI
# The apiserver's serving certificate and the client certificates of each identity come from the one test
# PKI module, tests/pki.py.


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


# -------------------------------------------------------------------------------------------- processes


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe_exit(self) -> str:
        return f"{self.name} exited with code {self.popen.returncode}:\n{tail(self.log_path)}"


def _terminate(proc: _Process, timeout: float) -> None:
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=timeout)
    proc.log_file.close()


# ---------------------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports, plus optional scheduler and controller-manager.

    ``start()`` brings up etcd and the apiserver and waits for ``/readyz``; ``stop()`` ends every process
    (SIGTERM, then SIGKILL) and deletes the temporary directory, and is safe to call more than once or
    after a failed start. Use as a context manager to get both.

    ``service_account_admission``: leave False unless a controller-manager will run (it creates the
    ``default`` ServiceAccount every pod needs when the ServiceAccount admission plugin is on).
    """

    def __init__(
        self,
        assets_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        service_account_admission: bool = False,
        audit_policy: Mapping[str, Any] | None = None,
        extra_apiserver_args: Sequence[str] = (),
        keep_tmp: bool = False,
    ) -> None:
        self.assets_dir = find_assets(assets_dir)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.service_account_admission = service_account_admission
        self.audit_policy: Mapping[str, Any] = (
            audit_policy if audit_policy is not None else DEFAULT_AUDIT_POLICY
        )
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.keep_tmp = keep_tmp or os.environ.get("E2E_KEEP_TMP", "") not in ("", "0", "false")

        self.tmp_dir = Path(tempfile.mkdtemp(prefix="immutable-os-e2e-"))
        self.pki_dir = self.tmp_dir / "pki"
        self.log_dir = self.tmp_dir / "logs"
        self.pki_dir.mkdir(mode=0o700)
        self.log_dir.mkdir()

        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.url = f"https://{LOOPBACK}:{self.port}"
        self.etcd_url = f"http://{LOOPBACK}:{self.etcd_port}"

        self.kubeconfig_path = self.tmp_dir / "admin.kubeconfig"
        self.audit_log_path = self.log_dir / "audit.log"
        self.audit_policy_path = self.tmp_dir / "audit-policy.yaml"

        self.server_ca = CertificateAuthority("immutable-os-e2e-server-ca")
        self.client_ca = CertificateAuthority("immutable-os-e2e-client-ca")
        self.ca_path = _write(self.pki_dir / "server-ca.crt", self.server_ca.cert_pem, 0o644)
        self.client_ca_path = _write(self.pki_dir / "client-ca.crt", self.client_ca.cert_pem, 0o644)
        self.sa_key_path = self.pki_dir / "sa.key"
        self.sa_pub_path = self.pki_dir / "sa.pub"
        self.admin_cert_path, self.admin_key_path = self.issue_client_cert("admin", ["system:masters"])

        self._procs: dict[str, _Process] = {}
        self._stopped = False
        self.version: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start etcd and the apiserver and wait until ``/readyz`` is ok; stops everything on failure."""
        try:
            self._write_pki()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig(self.kubeconfig_path, self.admin_cert_path, self.admin_key_path)
            self.version = json.loads(self.get("/version"))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate all processes (newest first; SIGTERM, SIGKILL after `stop_timeout`) and delete the
        temporary directory (kept when `keep_tmp` or ``E2E_KEEP_TMP=1``)."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[BaseException] = []
        for proc in reversed(list(self._procs.values())):
            try:
                _terminate(proc, self.stop_timeout)
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        if self.keep_tmp:
            print(f"control plane files kept in {self.tmp_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if errors:
            raise errors[0]

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver only (SIGTERM, then SIGKILL after `stop_timeout`; at once with `kill`),
        keeping etcd and every file: an apiserver outage. `start_apiserver` brings it back."""
        proc = self._procs.get("kube-apiserver")
        if proc is None or not proc.alive():
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
        _terminate(proc, self.stop_timeout)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again after `stop_apiserver`: same port, certificates, flags and etcd (so
        the same objects); returns once ``/readyz`` is ok. Does nothing if it is running."""
        proc = self._procs.get("kube-apiserver")
        if proc is not None and proc.alive():
            return
        self._start_apiserver()

    @property
    def running(self) -> dict[str, bool]:
        """Process name -> still alive."""
        return {name: p.alive() for name, p in self._procs.items()}

    def log_path(self, name: str) -> Path:
        """Log file of a process: ``etcd``, ``kube-apiserver``, ``kube-scheduler``,
        ``kube-controller-manager``."""
        return self.log_dir / f"{name}.log"

    def logs(self, name: str, lines: int = 40) -> str:
        return tail(self.log_path(name), lines)

    # -- certificates and kubeconfigs ------------------------------------------------------------------

    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        """A client certificate (CN=`user`, O=`groups`) the apiserver accepts; returns (cert, key) paths."""
        cert, key = self.client_ca.issue(user, organizations=groups, client=True)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        return (_write(self.pki_dir / f"{stem}.crt", cert), _write(self.pki_dir / f"{stem}.key", key))

    def write_kubeconfig(self, path: str | os.PathLike[str], user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for another identity (e.g. to test RBAC)."""
        cert, key = self.issue_client_cert(user, groups)
        return self._write_kubeconfig(Path(path), cert, key)

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path) -> Path:
        name = "immutable-os-e2e"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)}}
            ],
            "users": [{"name": name, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        return _write(path, yaml.safe_dump(doc))

    def _write_pki(self) -> None:
        cert, key = self.server_ca.issue(
            "kube-apiserver",
            ip_sans=[LOOPBACK, "10.0.0.1"],
            dns_sans=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            server=True,
        )
        _write(self.pki_dir / "apiserver.crt", cert)
        _write(self.pki_dir / "apiserver.key", key)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(self.sa_key_path, pem_key(sa_key))
        _write(
            self.sa_pub_path,
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
        _write(self.audit_policy_path, yaml.safe_dump(dict(self.audit_policy)))

    # -- processes -------------------------------------------------------------------------------------

    def _spawn(self, name: str, args: Sequence[str]) -> _Process:
        if self._stopped:
            raise ControlPlaneError("control plane already stopped")
        binary = find_assets(self.assets_dir, [name]) / name
        log_path = self.log_path(name)
        log_file = log_path.open("ab")
        popen = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.tmp_dir,
            preexec_fn=_die_with_parent,
        )
        proc = _Process(name, popen, log_path, log_file)
        self._procs[name] = proc
        return proc

    def _wait_ready(self, proc: _Process, probe: Callable[[], bool], what: str) -> None:
        def check() -> bool:
            if not proc.alive():
                raise ControlPlaneError(proc.describe_exit())
            return probe()

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if check():
                    return
            except ControlPlaneError:
                raise
            except Exception:
                pass
            if time.monotonic() >= deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {self.startup_timeout:.0f}s; last lines of its log:\n"
                    + tail(proc.log_path)
                )
            time.sleep(0.2)

    def _start_etcd(self) -> None:
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        proc = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.tmp_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait_ready(proc, healthy, "etcd")

    def _start_apiserver(self) -> None:
        args = [
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--cert-dir={self.tmp_dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki_dir / 'apiserver.key'}",
            f"--client-ca-file={self.client_ca_path}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={self.sa_pub_path}",
            f"--service-account-signing-key-file={self.sa_key_path}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--audit-policy-file={self.audit_policy_path}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-mode=blocking",
            # The lease reconciler would publish 127.0.0.1 as the `kubernetes` Endpoints, which validation
            # rejects (loopback) and logs every 10 s; the Service itself is still created.
            "--endpoint-reconciler-type=none",
        ]
        if not self.service_account_admission:
            args.append("--disable-admission-plugins=ServiceAccount")
        args.extend(self.extra_apiserver_args)
        proc = self._spawn("kube-apiserver", args)
        self._wait_ready(proc, lambda: self.get("/readyz", timeout=2) == "ok", "kube-apiserver")

    def start_scheduler(self, extra_args: Sequence[str] = ()) -> None:
        """Start kube-scheduler (as system:kube-scheduler) and wait for its /healthz. Idempotent."""
        if "kube-scheduler" in self._procs:
            return
        cert, key = self.issue_client_cert("system:kube-scheduler")
        kubeconfig = self._write_kubeconfig(self.tmp_dir / "scheduler.kubeconfig", cert, key)
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self.tmp_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                *extra_args,
            ],
        )
        self._wait_ready(
            proc, lambda: _insecure_get(f"https://{LOOPBACK}:{port}/healthz") == "ok", "kube-scheduler"
        )

    def start_controller_manager(
        self,
        disabled_controllers: Sequence[str] = DEFAULT_DISABLED_CONTROLLERS,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Start kube-controller-manager (as system:kube-controller-manager in group system:masters, all
        default controllers but `disabled_controllers`) and wait for its /healthz. Idempotent."""
        if "kube-controller-manager" in self._procs:
            return
        # With --use-service-account-credentials=false every controller runs as this one identity; the
        # bootstrap system:kube-controller-manager role covers only the core loop, so it is a master.
        cert, key = self.issue_client_cert("system:kube-controller-manager", ["system:masters"])
        kubeconfig = self._write_kubeconfig(self.tmp_dir / "controller-manager.kubeconfig", cert, key)
        port = free_port()
        controllers = ",".join(["*", *(f"-{c}" for c in disabled_controllers)])
        proc = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self.tmp_dir / 'controller-manager-certs'}",
                "--leader-elect=false",
                f"--controllers={controllers}",
                f"--service-account-private-key-file={self.sa_key_path}",
                f"--root-ca-file={self.ca_path}",
                "--use-service-account-credentials=false",
                "--service-cluster-ip-range=10.0.0.0/24",
                *extra_args,
            ],
        )
        self._wait_ready(
            proc,
            lambda: _insecure_get(f"https://{LOOPBACK}:{port}/healthz") == "ok",
            "kube-controller-manager",
        )

    # -- talking to the apiserver ----------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the apiserver and presents the admin client certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
        return ctx

    def get(self, path: str, timeout: float = 10.0) -> str:
        """GET a raw path (``/version``, ``/readyz``, ``/metrics``...) as admin; raises on non-2xx."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout, context=self.ssl_context()) as resp:
            body: bytes = resp.read()
            return body.decode()

    def api_client(self) -> k8s.ApiClient:
        """A new official-client ApiClient as admin (close it when done)."""
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig_path)
        )
        return api

    def kubectl(
        self,
        *args: str,
        check: bool = False,
        input: str | None = None,
        timeout: float = 60.0,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as admin against this apiserver; text output captured unless `kw` says otherwise."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        binary = find_assets(self.assets_dir, ["kubectl"]) / "kubectl"
        return subprocess.run(
            [str(binary), f"--kubeconfig={self.kubeconfig_path}", *args],
            check=check,
            input=input,
            timeout=timeout,
            **kw,
        )

    def audit_events(self) -> list[dict[str, Any]]:
        """Every event in the audit log so far (the log backend writes synchronously)."""
        try:
            lines = self.audit_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


def _insecure_get(url: str, timeout: float = 2.0) -> str:
    """GET from a component's self-signed health endpoint on loopback."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            body: bytes = resp.read()
            return body.decode()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


# ------------------------------------------------------------------------------------------ node pools


def unique_pool_name(prefix: str) -> str:
    """An AKS-shaped pool name (lowercase alphanumerics, at most 12 characters), unique per call."""
    return f"{prefix[:8]}{secrets.token_hex(2)}"


node_name = aks.node_name


def _taint(t: Mapping[str, Any] | k8s.V1Taint | str) -> dict[str, Any]:
    """A taint as a JSON dict, from a dict, a V1Taint, or ``key=value:Effect`` / ``key:Effect``."""
    if isinstance(t, k8s.V1Taint):
        return {
            k: v for k, v in {"key": t.key, "value": t.value, "effect": t.effect}.items() if v is not None
        }
    if isinstance(t, str):
        spec, _, effect = t.rpartition(":")
        key, _, value = spec.partition("=")
        return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
    return dict(t)


def create_node_pool(
    api: k8s.CoreV1Api | k8s.ApiClient,
    name: str,
    count: int = 1,
    labels: Mapping[str, str] | None = None,
    os_image: str | None = None,
    kernel_version: str | None = None,
    taints: Sequence[Mapping[str, Any] | k8s.V1Taint | str] = (),
    *,
    os_sku: str = "Ubuntu",
    scenario: str = "family",
    zones: int = 3,
    mode: str = "",
    node_image_version: str | None = None,
    kubelet_version: str = "v1.36.3",
    architecture: str = "amd64",
    cpu: str = "4",
    memory: str = "16Gi",
    pods: str = "110",
    ready: bool = True,
) -> list[k8s.V1Node]:
    """Create `count` Nodes of an AKS node pool through the API, labelled as AKS labels them (tests/aks.py:
    `scenario` "family" puts the OS family in os-sku and the SKU in os-sku-requested, "name" the SKU in
    both, "osimage" leaves only osImage to tell), spread over `zones`, with exactly `taints` and (if
    `ready`) a Ready status with capacity and nodeInfo. `labels` are added last and win (a value of "" is
    kept; use it to model odd nodes). Returns the Nodes as stored after the patches.
    """
    core = api if isinstance(api, k8s.CoreV1Api) else k8s.CoreV1Api(api)
    facts = aks.skus()[os_sku]
    os_image = os_image if os_image is not None else facts["osImage"]
    kernel_version = kernel_version if kernel_version is not None else facts["kernelVersion"]
    wanted_taints = [_taint(t) for t in taints]

    nodes: list[k8s.V1Node] = []
    for i in range(count):
        hostname = node_name(name, i)
        node_labels = aks.labels(name, os_sku, i, scenario=scenario, zones=zones, mode=mode.lower() or None)
        node_labels["beta.kubernetes.io/os"] = "linux"
        node_labels["beta.kubernetes.io/arch"] = architecture
        node_labels["kubernetes.io/arch"] = architecture
        if node_image_version is not None:
            node_labels[aks.IMAGE_VERSION] = node_image_version
        node_labels.update(labels or {})
        body = k8s.V1Node(
            api_version="v1",
            kind="Node",
            metadata=k8s.V1ObjectMeta(name=hostname, labels=node_labels),
            spec=k8s.V1NodeSpec(taints=[k8s.V1Taint(**t) for t in wanted_taints] or None),
        )
        core.create_node(body)
        # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready:NoSchedule on
        # create; the node-lifecycle controller would remove it once Ready. Nothing runs it here.
        core.patch_node(hostname, [{"op": "add", "path": "/spec/taints", "value": wanted_taints}])
        if ready:
            core.patch_node_status(
                hostname,
                {
                    "status": _ready_status(
                        hostname, os_image, kernel_version, kubelet_version, architecture, cpu, memory, pods
                    )
                },
            )
        nodes.append(core.read_node(hostname))
    return nodes


def _ready_status(
    hostname: str,
    os_image: str,
    kernel_version: str,
    kubelet_version: str,
    architecture: str,
    cpu: str,
    memory: str,
    pods: str,
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": reason,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("Ready", "True", "KubeletReady"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": LOOPBACK},
            {"type": "Hostname", "address": hostname},
        ],
        "nodeInfo": {
            "machineID": hashlib.md5(hostname.encode(), usedforsecurity=False).hexdigest(),
            "systemUUID": hashlib.md5(hostname.encode() + b"uuid", usedforsecurity=False).hexdigest(),
            "bootID": hashlib.md5(hostname.encode() + b"boot", usedforsecurity=False).hexdigest(),
            "kernelVersion": kernel_version,
            "osImage": os_image,
            "containerRuntimeVersion": "containerd://1.7.27",
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": architecture,
        },
    }


def delete_node_pool(api: k8s.CoreV1Api | k8s.ApiClient, name: str) -> None:
    """Delete every Node of a pool (by the ``agentpool`` label)."""
    core = api if isinstance(api, k8s.CoreV1Api) else k8s.CoreV1Api(api)
    core.delete_collection_node(label_selector=f"agentpool={name}")


def iter_audit_annotations(
    events: Sequence[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """(event, key, value) for every audit annotation in `events`."""
    for event in events:
        for key, value in (event.get("annotations") or {}).items():
            yield event, key, value


def admin(cp: ControlPlane) -> k8s.CoreV1Api:
    """A fresh admin client: after an apiserver restart the old one's pooled connections are dead."""
    return k8s.CoreV1Api(cp.api_client())
