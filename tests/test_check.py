"""`python -m webhook check` on real-world input: whole release files, a directory of them, `helm template`
output of this chart, `kubectl get all -A -o yaml`; every exit code; the summary; the plan and the config
it emits, applied to the same input."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import OS_SKU, host_path, set_field, tweak, wrap
from tests.test_chart import CHART, find_helm, run_helm
from webhook.cli import main
from webhook.core.manifests import WORKLOAD_API_VERSIONS

REPO = Path(__file__).resolve().parents[1]
RELEASES = REPO / "testdata" / "releases"
CORPUS = REPO / "testdata" / "workloads"
EXPECTED: list[dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, "-o", "json", *args)
    assert code in (0, 1), err
    return code, json.loads(out)


def write(tmp_path: Path, name: str, *docs: Any) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def kinds_in(*paths: Path) -> Counter[str]:
    """Every document's kind, read independently of the code under test."""
    return Counter(
        d["kind"] for p in paths for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict) and d
    )


def named(obj: dict[str, Any], name: str, namespace: str = "default") -> dict[str, Any]:
    obj["metadata"] = {**obj["metadata"], "name": name, "namespace": namespace}
    return obj


# ---------------------------------------------------------------------------------------- real-world input


def test_release_files_judge_their_workloads_and_count_everything_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, result = check_json(capsys, str(RELEASES))
    assert code == 0
    assert [(r["kind"], r["namespace"], r["name"], r["verdict"]) for r in result["results"]] == [
        ("Deployment", "cert-manager", n, "allowed") for n in ("cert-manager-cainjector", "cert-manager", "cert-manager-webhook")
    ]  # fmt: skip
    others = kinds_in(*sorted(RELEASES.glob("*.yaml"))) - Counter({"Deployment": 4})
    assert result["summary"]["skipped"] == dict(others)
    assert {"CustomResourceDefinition", "ClusterRole", "RoleBinding", "Service", "PodDisruptionBudget", "APIService",
            "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Namespace"} <= set(others)  # fmt: skip
    # metrics-server lives in kube-system, which the installed webhook never sees
    assert result["summary"]["notJudged"] == {"kube-system": 1}
    code, everything = check_json(capsys, "--include-system-namespaces", str(RELEASES))
    assert code == 0 and ("kube-system", "metrics-server") in {
        (r["namespace"], r["name"]) for r in everything["results"]
    }
    assert everything["summary"]["notJudged"] == {}


def test_a_directory_of_release_files_judges_every_workload_the_corpus_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, result = check_json(capsys, "--include-system-namespaces", str(CORPUS))
    assert code == 0
    assert sorted((r["kind"], r["namespace"], r["name"]) for r in result["results"]) == sorted(
        (e["kind"], e["namespace"], e["name"]) for e in EXPECTED
    )
    files = [p for p in CORPUS.glob("*.yaml") if p.name != "expected.yaml"]
    assert sum(result["summary"]["skipped"].values()) == sum(
        n for kind, n in kinds_in(*files).items() if kind not in WORKLOAD_API_VERSIONS
    )
    assert result["summary"]["notObjects"] == 1  # expected.yaml: a list, no Kubernetes object
    # By default, as installed: kube-system is left out, and the summary says so.
    code, installed = check_json(capsys, str(CORPUS))
    in_kube_system = sum(1 for e in EXPECTED if e["namespace"] == "kube-system")
    assert len(installed["results"]) == len(EXPECTED) - in_kube_system
    assert installed["summary"]["notJudged"] == {"kube-system": in_kube_system}
    assert "--include-system-namespaces judges them" in installed["summary"]["line"]


def test_a_file_with_nothing_the_webhook_sees_is_exit_2_naming_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, str(CORPUS / "kured.yaml"))
    assert code == 2 and out == ""
    assert err == (f"error: {CORPUS / 'kured.yaml'}: nothing to judge: judged 0 workloads in 1 file; skipped 5 other "
                   "objects: 1 ClusterRole, 1 ClusterRoleBinding, 1 Role, 1 RoleBinding, 1 ServiceAccount; not judged, as "
                   "the installed webhook never sees them: 1 in kube-system (add --include-system-namespaces to judge "
                   "what the installed webhook never sees)\n")  # fmt: skip
    code, out, _ = run(capsys, "--include-system-namespaces", str(CORPUS / "kured.yaml"))
    assert code == 0 and out.startswith("DEGRADED DaemonSet kube-system/kured")


def test_helm_template_output_of_this_chart(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    helm = find_helm()
    if helm is None:
        pytest.skip('helm not found (export "$(hack/control-plane.sh | tail -1)")')
    rendered = run_helm(
        helm, "template", "iow", str(CHART), "-n", "iow-system", "--set", "reports.enabled=true"
    )
    assert rendered.returncode == 0, rendered.stderr
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered.stdout)
    code, result = check_json(capsys, "--webhook-namespace", "elsewhere", str(path))
    assert code == 0
    assert {(r["kind"], r["name"], r["verdict"]) for r in result["results"]} == {
        ("Deployment", "iow-immutable-os-webhook", "allowed"),
        ("CronJob", "iow-immutable-os-webhook-reports", "allowed"),
    }
    assert result["summary"]["skipped"]["MutatingWebhookConfiguration"] == 1
    # Installed in its own namespace, the webhook never judges itself: nothing to judge.
    code, _, err = run(capsys, "--webhook-namespace", "iow-system", str(path))
    assert code == 2 and "2 in iow-system" in err


def test_kubectl_get_all_reports_controlled_objects_at_their_owner(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def owned(obj: dict[str, Any], kind: str, owner: str) -> dict[str, Any]:
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": owner, "controller": True,
                                               "uid": "u"}]  # fmt: skip
        return obj

    agent = tweak(host_path("/usr/local/bin"))
    items = [
        named(wrap(tweak(), "Deployment"), "web"), owned(named(wrap(tweak(), "ReplicaSet"), "web-5d8f"), "Deployment", "web"),
        owned(named(tweak(), "web-5d8f-a"), "ReplicaSet", "web-5d8f"), owned(named(tweak(), "web-5d8f-b"), "ReplicaSet", "web-5d8f"),
        named(wrap(agent, "DaemonSet"), "agent"), owned(named(agent, "agent-x1"), "DaemonSet", "agent"),
        named(wrap(tweak(), "CronJob"), "nightly"), owned(named(wrap(tweak(), "Job"), "nightly-28000"), "CronJob", "nightly"),
        owned(named(tweak(), "nightly-28000-q"), "Job", "nightly-28000"),
        # a pod whose owner is not in the input is judged itself
        owned(named(tweak(host_path("/usr/lib/x"), set_field("nodeSelector", {OS_SKU: "AzureLinux"})), "orphan"), "ReplicaSet", "gone"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "default"}},
    ]  # fmt: skip
    path = write(tmp_path, "all.yaml", {"apiVersion": "v1", "kind": "List", "items": items})
    code, result = check_json(capsys, path)
    assert [(r["kind"], r["name"]) for r in result["results"]] == [
        ("Deployment", "web"),
        ("DaemonSet", "agent"),
        ("CronJob", "nightly"),
        ("Pod", "orphan"),
    ]
    assert result["summary"]["ownedByJudgedControllers"] == 6
    assert result["summary"]["skipped"] == {"Service": 1, "HorizontalPodAutoscaler": 1}
    assert code == 1  # the orphan writes /usr on the Azure Linux-family pools (ACL, OS Guard) only


# ------------------------------------------------------------------------------------ exit codes, summary

WEB = named(wrap(tweak(), "Deployment"), "web")
PINNED = named(tweak(host_path("/usr/lib/x"), set_field("nodeSelector", {"agentpool": "acl"})), "pinned")
AGENT = named(wrap(tweak(host_path("/usr/local/bin")), "DaemonSet"), "agent")
CNI = named(tweak(set_field("hostNetwork", True), set_field("nodeSelector", {"agentpool": "acl"})), "cni")
WARN = {"default": {"immutable-os.io/mode": "warn"}}

EXITS = [
    ("allowed only", [WEB], [], 0),
    ("denied", [WEB, PINNED], [], 1),
    ("denied, --fail-on never", [PINNED], ["--fail-on", "never"], 0),
    ("steered passes by default", [AGENT], [], 0),
    ("steered, --fail-on steered", [AGENT], ["--fail-on", "steered"], 1),
    ("warned passes --fail-on steered", [PINNED], ["--fail-on", "steered", "--namespace-labels", "NS"], 0),
    ("warned, --fail-on warned", [PINNED], ["--fail-on", "warned", "--namespace-labels", "NS"], 1),
    ("degraded passes --fail-on warned", [CNI], ["--fail-on", "warned"], 0),
    ("degraded, --fail-on degraded", [CNI], ["--fail-on", "degraded"], 1),
]  # fmt: skip


@pytest.mark.parametrize(("docs", "args", "code"), [e[1:] for e in EXITS], ids=[e[0] for e in EXITS])
def test_exit_codes_follow_fail_on(capsys: pytest.CaptureFixture[str], tmp_path: Path, docs: list[dict[str, Any]],
                                   args: list[str], code: int) -> None:  # fmt: skip
    labels = write(tmp_path, "ns.yaml", WARN)
    path = write(tmp_path, "m.yaml", *docs)
    got, out, err = run(capsys, *[labels if a == "NS" else a for a in args], path)
    assert got == code, out + err


BAD_EXITS = [
    ("empty file", "", "nothing to judge: no documents"),
    ("comments only", "# nothing\n---\n", "nothing to judge: no documents"),
    ("CRDs only", (RELEASES / "crds-only.yaml").read_text(), "skipped 2 other objects: 2 CustomResourceDefinition (give workloads: Pod"),
    ("kube-system only", (RELEASES / "metrics-server-ha.yaml").read_text(), "1 in kube-system (add --include-system-namespaces"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), [b[1:] for b in BAD_EXITS], ids=[b[0] for b in BAD_EXITS])
def test_nothing_to_judge_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(content)
    code, out, err = run(capsys, str(path))
    assert code == 2 and out == "" and err.startswith(f"error: {path}: nothing to judge") and message in err


def test_empty_stdin_and_empty_directories_are_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    (tmp_path / "empty.yaml").write_text("")
    monkeypatch.setattr(sys, "stdin", open(tmp_path / "empty.yaml"))  # noqa: SIM115
    code, _, err = run(capsys, "-")
    assert code == 2 and err == "error: -: nothing to judge: no documents (give Kubernetes manifests: multi-document " \
        "YAML, JSON or a List)\n"  # fmt: skip
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("kind: Pod")
    code, _, err = run(capsys, str(tmp_path / "dir"))
    assert code == 2 and "no .yaml, .yml or .json files in this directory" in err


def test_upper_case_suffixes_are_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    write(tmp_path / "dir", "PINNED.YAML", PINNED)
    code, out, _ = run(capsys, str(tmp_path / "dir"))
    assert code == 1 and out.startswith("DENIED   Pod default/pinned")


def test_the_summary_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    system = named(wrap(tweak(), "DaemonSet"), "kube-proxy", "kube-system")
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    path = write(tmp_path, "m.yaml", WEB, config_map, PINNED, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
                 config_map, system, AGENT)  # fmt: skip
    code, out, _ = run(capsys, path)
    assert code == 1
    assert out.splitlines()[-1] == (
        "judged 3 workloads in 1 file: 1 denied, 1 steered, 1 allowed; skipped 3 other objects: 2 ConfigMap, 1 Service; "
        "not judged, as the installed webhook never sees them: 1 in kube-system; --include-system-namespaces judges them"
    )
    exempt = write(tmp_path, "c.yaml", {"exemptions": {"namespaces": ["default"]}})
    code, out, _ = run(capsys, "--config", exempt, path)
    assert (
        code == 0
        and "judged 3 workloads in 1 file: 3 allowed (3 exempt by the config);" in out.splitlines()[-1]
    )


def test_typos_are_errors_naming_each_document_in_one_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    typo_group = {**named(wrap(tweak(), "DaemonSet"), "agent"), "apiVersion": "app/v1"}
    typo_kind = {**named(wrap(tweak(), "DaemonSet"), "agent2"), "kind": "Daemonset"}
    path = write(tmp_path, "m.yaml", WEB, typo_group, typo_kind)
    code, out, err = run(capsys, path)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {path} document 2 (DaemonSet default/agent): apiVersion: app/v1 does not serve DaemonSet (use apiVersion: apps/v1)",
        f"error: {path} document 3 (Daemonset default/agent2): kind: unknown kind 'Daemonset': did you mean DaemonSet? "
        "(kind: DaemonSet (apiVersion: apps/v1))",
    ]  # fmt: skip


def test_values_files_bring_the_chart_exclusions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monitoring = named(wrap(tweak(host_path("/usr/lib/x"), set_field("nodeSelector", {"agentpool": "acl"})), "Deployment"),
                       "pinned", "monitoring")  # fmt: skip
    path = write(tmp_path, "m.yaml", WEB, monitoring)
    values = write(
        tmp_path,
        "values.yaml",
        {"webhook": {"excludeNamespaces": ["monitoring"]}, "config": {"mode": "enforce"}},
    )
    code, result = check_json(capsys, "--values", values, path)
    assert code == 0 and result["summary"]["notJudged"] == {"monitoring": 1}
    assert check_json(capsys, path)[0] == 1


# ------------------------------------------------------------------------------- the plan, --emit-config


def test_the_plan_names_the_smallest_fix_and_applying_it_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "m.yaml", PINNED, AGENT)
    code, out, _ = run(capsys, path)
    assert code == 1
    lines = out.splitlines()
    start = lines.index("plan: 1 workload fails --fail-on denied; the smallest fix for each:")
    assert lines[start + 1:start + 4] == [
        "  Pod default/pinned: denied (breaks on acl)",
        '    fix: mount /usr/lib/x (volume "host", spec.volumes[0]) read-only, if pinned only reads there',
        "    or in the config: allowedHostPaths {pathPrefix: /usr/lib/x, readOnly: false} (the webhook stops judging "
        "these paths in every namespace; its pods may still break on acl)",
    ]  # fmt: skip
    assert "  DaemonSet default/agent: steered (breaks on acl, osguard)" in lines
    assert "    steered: will not run on pool acl (Azure Container Linux, 2 nodes), osguard (Azure Linux OS Guard, " \
        "1 node); covers 2 of 5 nodes" in lines  # fmt: skip
    fixed = json.loads(json.dumps(PINNED))
    fixed["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = True
    code, out, _ = run(capsys, write(tmp_path, "fixed.yaml", fixed, AGENT))
    assert code == 0 and "plan:" not in out


@pytest.mark.parametrize("form", ["config", "values"])
@pytest.mark.parametrize("fail_on", ["denied", "steered", "warned"])
def test_the_emitted_config_makes_the_same_input_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path, form: str,
                                                      fail_on: str) -> None:  # fmt: skip
    installs = named(tweak(set_field("hostPID", True), set_field("nodeSelector", {"agentpool": "acl"}), set_field(
        "containers", [{"name": "c", "image": "i", "args": ["nsenter -t 1 -m -- yum install -y iscsi"]}])), "installs")  # fmt: skip
    path = write(
        tmp_path,
        "m.yaml",
        WEB,
        PINNED,
        AGENT,
        installs,
        named(wrap(tweak(host_path("/")), "DaemonSet"), "root"),
    )
    user = write(tmp_path, "user.yaml", {"config": {"steering": {"daemonSets": "steer"}}} if form == "values"
                 else {"steering": {"daemonSets": "steer"}})  # fmt: skip
    source = "--values" if form == "values" else "--config"
    code, out, err = run(capsys, source, user, "--fail-on", fail_on, "--emit-config", form, path)
    assert code == 1 and "plan:" in err and err.splitlines()[-1].startswith("judged 5 workloads")
    emitted = yaml.safe_load(out)
    config = emitted["config"] if form == "values" else emitted
    assert config["steering"] == {"daemonSets": "steer"}  # the user's own config is kept
    assert out.startswith(
        f"# immutable-os-webhook: the config with which `check` passes --fail-on {fail_on}.\n"
    )
    fix = tmp_path / "fix.yaml"
    fix.write_text(out)
    code, out, err = run(capsys, source, str(fix), "--fail-on", fail_on, path)
    assert code == 0, out + err
    assert "plan:" not in out


def test_json_output_carries_results_summary_and_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result = check_json(capsys, write(tmp_path, "m.yaml", PINNED, AGENT))
    assert code == 1 and set(result) == {"results", "summary", "plan"}
    assert result["summary"]["verdicts"] == {"denied": 1, "steered": 1}
    steps = {s["name"]: s for s in result["plan"]["steps"]}
    assert steps["pinned"]["fails"] and steps["pinned"]["fix"]["kind"] == "read-only"
    assert steps["pinned"]["configFix"]["allowedHostPaths"] == [
        {"pathPrefix": "/usr/lib/x", "readOnly": False}
    ]
    assert not steps["agent"]["fails"] and steps["agent"]["steering"].endswith("covers 2 of 5 nodes")


# ------------------------------------------------------------------------------------ a closed stdout


def test_closing_stdout_early_ends_quietly_with_the_exit_code_unchanged() -> None:
    denied = [named(json.loads(json.dumps(PINNED)), f"pinned-{i}") for i in range(2000)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
        manifest.write(yaml.safe_dump_all(denied))
        manifest.flush()
        process = subprocess.Popen([sys.executable, "-m", "webhook", "check", manifest.name], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, cwd=REPO)  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        first = (
            process.stdout.readline()
        )  # the output is far bigger than a pipe holds: the writer is blocked now
        process.stdout.close()
        stderr = process.stderr.read()
        code = process.wait(timeout=120)
    assert first.startswith(b"DENIED   Pod default/pinned-0")
    assert stderr == b"" and code == 1
