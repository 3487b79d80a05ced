"""Reading manifests: every file and document accounted for, errors collected (not raised one by one),
the C YAML loader, JSON read as JSON, suffixes in any case, typed lists given their items' kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from webhook.adapters import files
from webhook.adapters.files import read_manifests, read_values
from webhook.errors import ConfigError, ManifestError


def test_the_c_loader_is_used_when_pyyaml_has_it() -> None:
    assert yaml.__with_libyaml__, "PyYAML wheels ship libyaml; this environment lacks it"
    assert files.LOADER is yaml.CSafeLoader


def test_directories_are_read_recursively_with_suffixes_in_any_case(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.yaml", "B.YAML", "sub/c.Yml", "d.json", "notes.txt", "README.md"):
        (tmp_path / name).write_text('{"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}')
    found = read_manifests([str(tmp_path)])
    assert sorted(Path(f).name for f in found.files) == ["B.YAML", "a.yaml", "c.Yml", "d.json"]
    assert len(found.documents) == 4 and not found.errors


def test_every_error_is_collected_and_the_rest_still_read(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: c}\n")
    (tmp_path / "bad.yaml").write_text("a: 1\nb: 2\n  c: 3\n")
    (tmp_path / "chart.yaml").write_text("kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.yaml").write_text("kind: List\napiVersion: v1\nitems: {not: a list}\n")
    found = read_manifests([str(tmp_path / n) for n in ("good.yaml", "bad.yaml", "chart.yaml", "empty", "list.yaml",
                                                       "missing.yaml")])  # fmt: skip
    assert [d.obj["kind"] for d in found.documents] == ["ConfigMap"]
    described = [e.describe() for e in found.errors]
    assert len(described) == 5 and all(isinstance(e, ManifestError) for e in found.errors)
    assert (
        described[0].startswith(f"{tmp_path}/bad.yaml:3:4: invalid YAML")
        and "(fix the syntax)" in described[0]
    )
    assert "looks like a Helm template" in described[1]
    assert described[2] == f"{tmp_path}/empty: no .yaml, .yml or .json files in this directory (give the directory " \
        "that holds the manifests)"  # fmt: skip
    assert described[3] == f"{tmp_path}/list.yaml document 1: items: items must be a list"
    assert described[4].startswith(f"{tmp_path}/missing.yaml: no such file or directory")


def test_lists_are_flattened_and_typed_lists_give_their_items_kind_and_version(tmp_path: Path) -> None:
    typed = {"apiVersion": "apps/v1", "kind": "DaemonSetList", "items": [{"metadata": {"name": "a"}},
             {"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": {"name": "b"}}]}  # fmt: skip
    plain = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}],
    }
    path = tmp_path / "lists.yaml"
    path.write_text(yaml.safe_dump_all([typed, plain]))
    found = read_manifests([str(path)])
    assert [(d.label.split("/")[-1], d.obj["kind"], d.obj["apiVersion"]) for d in found.documents] == [
        ("lists.yaml document 1 item 0", "DaemonSet", "apps/v1"),
        ("lists.yaml document 1 item 1", "DaemonSet", "apps/v1"),
        ("lists.yaml document 2 item 0", "Pod", "v1"),
    ]


def test_json_is_read_as_json_and_bad_json_falls_back_to_yaml_errors(tmp_path: Path) -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}],
    }
    (tmp_path / "all.json").write_text(json.dumps(listing, indent=1))
    (tmp_path / "bad.json").write_text('{"kind": "Pod",\n "metadata": {"name": "p"}\n')
    found = read_manifests([str(tmp_path / "all.json"), str(tmp_path / "bad.json")])
    assert [d.obj["metadata"]["name"] for d in found.documents] == ["p"]
    (error,) = found.errors
    assert error.field.startswith(f"{tmp_path}/bad.json:") and "invalid YAML" in error.message


def test_empty_input_is_no_documents_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.yaml").write_text("# only a comment\n---\n")
    assert read_manifests([str(tmp_path / "empty.yaml")]).documents == ()
    monkeypatch.setattr("sys.stdin", open(tmp_path / "empty.yaml"))  # noqa: SIM115
    found = read_manifests(["-"])
    assert found.files == ("-",) and found.documents == () and found.errors == ()


def test_values_files_give_the_config_and_the_webhook_section(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"image": {"tag": "x"}, "config": {"mode": "warn"},
                                    "webhook": {"excludeNamespaces": ["monitoring"]}}))  # fmt: skip
    loaded = read_values(str(path))
    assert loaded.config.mode.value == "warn" and loaded.raw == {"mode": "warn"} and loaded.from_values
    assert loaded.webhook_values == {"excludeNamespaces": ["monitoring"]}
    path.write_text(yaml.safe_dump({"config": {"mode": "strict"}}))
    with pytest.raises(ConfigError) as err:
        read_values(str(path))
    assert err.value.field == f"{path}: config: mode"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_values(str(path))
