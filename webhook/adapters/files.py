"""Reading YAML/JSON from disk or stdin for `check`: manifests, node lists, config, namespace labels.

Every error names the file and the document (and the field where it can), never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from webhook.core.config import Config
from webhook.core.manifests import describe
from webhook.core.placement import Node
from webhook.errors import ConfigError, ManifestError, NodeListError, WebhookError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # in any case: `.YAML` too
# libyaml's loader is several times faster than PyYAML's pure-Python one (bench/manifests.py); PyYAML
# wheels ship it, and a build without it still works, slowly.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STDIN = "-"


@dataclass(frozen=True)
class Document:
    source: str  # file name, or "-" for stdin
    index: int  # position in the file, from 1; "doc 2 item 3" for List items
    label: str
    obj: Any  # a mapping, unless the document is not a Kubernetes object at all (a list, a string)

    def describe(self) -> str:
        """The label, with the object's kind and name when it has them: what an error names."""
        return describe(self.label, self.obj)


@dataclass(frozen=True)
class ManifestSet:
    """Everything read from the paths given: the files, their documents (Lists flattened), and an error
    for each file or document that could not be read, so that one run reports all of them."""

    files: tuple[str, ...]
    documents: tuple[Document, ...]
    errors: tuple[WebhookError, ...]


def _read_text(path: str) -> str:
    if path == STDIN:
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read: {err}", field=path, fix="check the path") from err


def _parse(text: str, source: str, error: type[WebhookError]) -> list[Any]:
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        # JSON (`kubectl get -o json`) parses some hundred times faster as JSON than as YAML.
        try:
            return [json.loads(text)]
        except ValueError:
            pass  # not one JSON value: read it as YAML, which says where it is wrong
    try:
        return [d for d in yaml.load_all(text, Loader=LOADER) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        fix = "fix the syntax"
        if "{{" in text:
            fix = "this looks like a Helm template: check the output of `helm template` instead"
        raise error(f"invalid YAML: {getattr(err, 'problem', err)}", field=where, fix=fix) from err


def _files(path: str) -> list[str]:
    if path == STDIN:
        return [STDIN]
    p = Path(path)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in MANIFEST_SUFFIXES and f.is_file())
        if not found:
            raise ManifestError("no .yaml, .yml or .json files in this directory", field=path,
                                fix="give the directory that holds the manifests")  # fmt: skip
        return found
    if not p.exists():
        raise ManifestError("no such file or directory", field=path, fix="give a file, a directory or -")
    return [path]


def _items(doc: Mapping[str, Any], label: str) -> list[tuple[str, Mapping[str, Any]]]:
    """A document, or the items of a List (`kind: List`, or a typed list such as DeploymentList whose
    items the API sends without kind and apiVersion)."""
    kind = str(doc.get("kind", ""))
    if not (kind.endswith("List") and "items" in doc):
        return [(label, doc)]
    items = doc.get("items") or []
    if not isinstance(items, list):
        raise ManifestError("items must be a list", field=f"{label}: items")
    defaults = {"kind": kind[: -len("List")], "apiVersion": doc.get("apiVersion")} if kind != "List" else {}
    result = []
    for j, item in enumerate(items):
        item_label = f"{label} item {j}"
        if not isinstance(item, Mapping):
            raise ManifestError(f"expected an object, got {type(item).__name__}", field=item_label)
        missing = {k: v for k, v in defaults.items() if v and not item.get(k)}
        result.append((item_label, {**missing, **item} if missing else item))
    return result


def read_manifests(paths: list[str]) -> ManifestSet:
    """Every document in the files, directories (recursively: .yaml, .yml, .json in any case) or stdin
    (`-`) given; unreadable paths and documents become errors in the result, not exceptions."""
    files: list[str] = []
    documents: list[Document] = []
    errors: list[WebhookError] = []
    for path in paths:
        try:
            sources = _files(path)
        except WebhookError as err:
            errors.append(err)
            continue
        for source in sources:
            files.append(source)
            try:
                parsed = _parse(_read_text(source), source, ManifestError)
            except WebhookError as err:
                errors.append(err)
                continue
            for i, doc in enumerate(parsed, start=1):
                label = f"{source} document {i}"
                try:
                    if not isinstance(doc, Mapping):  # a list or a string: not a Kubernetes object
                        documents.append(Document(source, i, label, doc))
                        continue
                    documents += [
                        Document(source, i, item_label, item) for item_label, item in _items(doc, label)
                    ]
                except WebhookError as err:
                    errors.append(err)
    return ManifestSet(tuple(files), tuple(documents), tuple(errors))


def to_yaml(data: Any) -> str:
    """Block-style YAML in the order given, for snippets a person reads and applies."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110)


def load_nodes(path: str | None) -> list[Node]:
    """Nodes from `kubectl get nodes -o yaml` output (a List), or Node documents; else the example."""
    if path is None:
        text = resources.files("webhook").joinpath("data/example-nodes.yaml").read_text(encoding="utf-8")
        source = "<embedded example inventory>"
    else:
        try:
            text = _read_text(path)
        except ManifestError as err:
            raise NodeListError(err.message, field=err.field, fix=err.fix) from err
        source = path
    nodes = []
    for i, doc in enumerate(_parse(text, source, NodeListError), start=1):
        items = doc.get("items") if isinstance(doc, Mapping) and "items" in doc else [doc]
        if not isinstance(items, list):
            raise NodeListError("items must be a list", field=f"{source} document {i}")
        for j, item in enumerate(items):
            where = f"{source} document {i} item {j}"
            if isinstance(item, Mapping) and item.get("kind", "Node") != "Node":
                raise NodeListError(f"expected kind Node, got {item.get('kind')}", field=where)
            nodes.append(Node.from_wire(item, where))
    return nodes


@dataclass(frozen=True)
class LoadedConfig:
    """The webhook config, the mapping it was read from (to extend it in a snippet), and, from a Helm
    values file, its `webhook:` section (the namespaces and objects the configurations are called for)."""

    config: Config
    raw: Mapping[str, Any] | None = None
    webhook_values: Mapping[str, Any] | None = None
    from_values: bool = False


def _one_document(path: str) -> Any:
    try:
        text = _read_text(path)
    except ManifestError as err:
        raise ConfigError(err.message, field=err.field, fix=err.fix) from err
    docs = _parse(text, path, ConfigError)
    if len(docs) > 1:
        raise ConfigError("expected one YAML document", field=path, fix="remove the extra ---")
    return docs[0] if docs else None


def _config(raw: Any, where: str) -> Config:
    try:
        return Config.from_dict(raw)
    except ConfigError as err:
        raise ConfigError(err.message, field=f"{where}: {err.field}", fix=err.fix) from err


def load_config(path: str | None) -> Config:
    return read_config(path).config


def read_config(path: str | None) -> LoadedConfig:
    """A config file (`--config`), or the built-in defaults."""
    if path is None:
        return LoadedConfig(Config())
    raw = _one_document(path)
    return LoadedConfig(_config(raw, path), raw if isinstance(raw, Mapping) else None)


def read_values(path: str) -> LoadedConfig:
    """The chart's values file (`--values`): the config under `config:` and the `webhook:` section."""
    values = _one_document(path) or {}
    if not isinstance(values, Mapping):
        raise ConfigError("expected a mapping", field=path, fix="give the Helm values file (values.yaml)")
    raw = values.get("config")
    webhook = values.get("webhook")
    if webhook is not None and not isinstance(webhook, Mapping):
        raise ConfigError(
            "expected a mapping", field=f"{path}: webhook", fix="webhook: {excludeNamespaces: []}"
        )
    return LoadedConfig(_config(raw, f"{path}: config"), raw if isinstance(raw, Mapping) else None, webhook,
                        from_values=True)  # fmt: skip


def load_namespace_labels(path: str | None) -> dict[str, dict[str, str]]:
    """`{namespace: {label: value}}`, or `kubectl get namespaces -o yaml` output."""
    if path is None:
        return {}
    docs = _parse(_read_text(path), path, ManifestError)
    result: dict[str, dict[str, str]] = {}
    for i, doc in enumerate(docs, start=1):
        where = f"{path} document {i}"
        if not isinstance(doc, Mapping):
            raise ManifestError("expected a mapping", field=where, fix="namespace: {label: value}")
        if "items" in doc or doc.get("kind") == "Namespace":
            for ns in doc.get("items") or [doc]:
                meta = ns.get("metadata") or {} if isinstance(ns, Mapping) else {}
                result[str(meta.get("name"))] = {
                    str(k): str(v) for k, v in (meta.get("labels") or {}).items()
                }
            continue
        for name, labels in doc.items():
            if not isinstance(labels, Mapping):
                raise ManifestError("labels must be a mapping", field=f"{where}: {name}", fix="label: value")
            result[str(name)] = {str(k): str(v) for k, v in labels.items()}
    return result
