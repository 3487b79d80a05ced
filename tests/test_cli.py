"""`python -m webhook check`: exit codes, JSON shape, and bad input named by file, document and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.builders import OS_SKU, aks_pool, host_path, set_field, tweak, wrap
from webhook.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples" / "manifests"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code, out, _ = run(capsys, "check", "-o", "json", *args)
    return code, json.loads(out)["results"]


def write(tmp_path: Path, name: str, *docs: Any) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def test_bundled_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, results = check_json(capsys, str(EXAMPLES))
    by_name = {r["name"]: r for r in results}
    assert code == 1
    assert by_name["log-collector"]["verdict"] == "allowed" and by_name["log-collector"]["patch"] == []
    installer = by_name["tool-installer"]
    assert installer["verdict"] == "steered" and installer["breaksOn"] == ["acl", "osguard"]
    assert installer["coverage"] == {"daemonSet": "monitoring/tool-installer", "nodes": 5, "nodesAfter": 2,
                                     "losesPools": ["acl", "osguard"]}  # fmt: skip
    assert by_name["node-agent"]["verdict"] == "denied" and by_name["node-agent"]["landsOn"] == [
        "immutable:acl"
    ]
    assert by_name["web"] == {**by_name["web"], "verdict": "allowed", "patch": [], "findings": []}


def test_json_result_shape_and_patch_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deployment = wrap(tweak(host_path("/usr/local/bin")), "Deployment")
    code, (result,) = check_json(capsys, write(tmp_path, "d.yaml", deployment))
    assert code == 0
    assert set(result) >= {"source", "kind", "namespace", "name", "verdict", "outcome", "patch", "warnings",
                           "findings", "landsOn", "breaksOn", "degradedOn"}  # fmt: skip
    assert result["findings"] == [{"check": "host-path", "field": "spec.template.spec.volumes[0].hostPath.path",
                                   "message": 'volume "host" mounts /usr/local/bin (writable in app)'}]  # fmt: skip
    assert result["landsOn"] == ["immutable:acl", "immutable:osguard", "general:system"]
    assert result["verdict"] == "steered" and result["breaksOn"] == ["acl", "osguard"]
    patched = jsonpatch.apply_patch(deployment, result["patch"])
    assert "affinity" in patched["spec"]["template"]["spec"]


def test_multi_document_and_list_and_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    pod = tweak(set_field("hostPID", True), set_field("nodeSelector", {OS_SKU: "Ubuntu"}))
    listing = {"apiVersion": "v1", "kind": "List", "items": [pod, wrap(pod, "Job")]}
    path = write(tmp_path, "m.yaml", pod, listing)
    code, results = check_json(capsys, path)
    assert code == 0 and [r["kind"] for r in results] == ["Pod", "Pod", "Job"]
    monkeypatch.setattr(sys, "stdin", open(path))  # noqa: SIM115
    code, results = check_json(capsys, "-")
    assert code == 0 and len(results) == 3


def test_nodes_file_mode_user_group_and_namespace_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name, "labels": dict(n.labels)},
         "status": {"nodeInfo": {"osImage": n.os_image, "kernelVersion": n.kernel_version}}}
        for n in aks_pool("osguard", "AzureLinuxOSGuard")]}  # fmt: skip
    nodes_file = write(tmp_path, "nodes.yaml", nodes)
    pod = write(tmp_path, "p.yaml", tweak(set_field("hostNetwork", True), host_path("/usr/lib/x")))
    assert check_json(capsys, "--nodes", nodes_file, pod)[0] == 1
    assert check_json(capsys, "--nodes", nodes_file, "--mode", "warn", pod)[0] == 0
    config = write(tmp_path, "c.yaml", {"exemptions": {"groups": ["sre"], "usernames": ["root"]}})
    assert check_json(capsys, "--nodes", nodes_file, "--config", config, "--group", "sre", pod)[0] == 0
    assert check_json(capsys, "--nodes", nodes_file, "--config", config, "--user", "root", pod)[0] == 0
    labels = write(tmp_path, "ns.yaml", {"default": {"immutable-os.io/mode": "audit"}})
    assert check_json(capsys, "--nodes", nodes_file, "--namespace-labels", labels, pod)[0] == 0


BAD_INPUT = [
    ("bad yaml", "a: 1\nb: 2\n  c: 3\n", "bad.yaml:3:4", "invalid YAML"),
    ("only another kind", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "bad.yaml: nothing to judge",
     "skipped 1 other object: 1 ConfigMap"),
    ("no kind", {"metadata": {"name": "x"}}, "bad.yaml document 1 (x): kind", "missing kind"),
    ("deployment without template", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                                     "spec": {}}, "bad.yaml document 1 (Deployment d): spec.template", "needs spec.template"),
    ("scalar document", "just a string", "bad.yaml: nothing to judge", "skipped 1 document that is not a Kubernetes object"),
    ("missing operator", tweak(host_path("/var/log"), set_field("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "a"}]}]}}})),
     "nodeSelectorTerms[0].matchExpressions[0].operator", "missing operator"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "where", "what"), [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT]
)
def test_bad_manifests_exit_2_naming_file_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, where: str, what: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    code, out, err = run(capsys, "check", str(path))
    assert code == 2 and out == ""
    assert where in err and what in err and "Traceback" not in err


def test_bad_config_and_nodes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = write(tmp_path, "p.yaml", tweak())
    config = write(tmp_path, "c.yaml", {"mode": "strict"})
    code, _, err = run(capsys, "check", "--config", config, pod)
    assert code == 2 and "c.yaml: mode: invalid value 'strict'" in err
    nodes = write(tmp_path, "n.yaml", {"kind": "List", "items": [{"kind": "Node", "metadata": {}}]})
    code, _, err = run(capsys, "check", "--nodes", nodes, pod)
    assert code == 2 and "n.yaml document 1 item 0.metadata.name" in err
    code, _, err = run(capsys, "check", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in err


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "webhook", "check", str(EXAMPLES / "web-deployment.yaml")],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("ALLOWED  Deployment default/web")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kubeconfig", "{tmp}/missing"], "error: --kubeconfig: cannot use kubeconfig '{tmp}/missing'"),
        (["--example-nodes", "--label-nodes"], "error: --label-nodes: labels live nodes, so it needs the node watch"),
    ],
    ids=["unreadable-kubeconfig", "labeller-without-the-node-watch"],
)  # fmt: skip
def test_serve_refuses_what_cannot_work_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    # A subprocess: `serve` configures the process's logging, which the test session must keep.
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--cert-file", str(tmp_path / "tls.crt"),
         "--key-file", str(tmp_path / "tls.key"), *(a.format(tmp=tmp_path) for a in args)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert "(pass --kubeconfig" in result.stderr or "(drop --nodes-file/--example-nodes" in result.stderr
