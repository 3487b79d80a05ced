"""Reading YAML/JSON from disk or stdin for `check`: manifests, node lists, config, namespace labels.

Every error names the file and the document (and the field where it can), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from webhook.core.config import Config
from webhook.core.placement import Node
from webhook.errors import ConfigError, ManifestError, NodeListError, WebhookError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    source: str  # file name, or "-" for stdin
    index: int  # position in the file, from 1; "doc 2 item 3" for List items
    label: str
    obj: Mapping[str, Any]


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"cannot read: {err}", field=path, fix="check the path") from err


def _parse(text: str, source: str, error: type[WebhookError]) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise error(
            f"invalid YAML: {getattr(err, 'problem', err)}", field=where, fix="fix the syntax"
        ) from err


def _files(path: str) -> list[str]:
    if path == "-":
        return ["-"]
    p = Path(path)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*") if f.suffix in MANIFEST_SUFFIXES and f.is_file())
    if not p.exists():
        raise ManifestError("no such file or directory", field=path, fix="give a file, a directory or -")
    return [path]


def read_documents(paths: list[str]) -> Iterator[Document]:
    for path in paths:
        for source in _files(path):
            for i, doc in enumerate(_parse(_read_text(source), source, ManifestError), start=1):
                label = f"{source} document {i}"
                if not isinstance(doc, Mapping):
                    raise ManifestError(f"expected an object, got {type(doc).__name__}", field=label)
                if str(doc.get("kind", "")).endswith("List") and "items" in doc:
                    items = doc.get("items") or []
                    if not isinstance(items, list):
                        raise ManifestError("items must be a list", field=f"{label}: items")
                    for j, item in enumerate(items):
                        item_label = f"{label} item {j}"
                        if not isinstance(item, Mapping):
                            raise ManifestError("expected an object", field=item_label)
                        yield Document(source, i, item_label, item)
                else:
                    yield Document(source, i, label, doc)


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


def load_config(path: str | None) -> Config:
    if path is None:
        return Config()
    try:
        text = _read_text(path)
    except ManifestError as err:
        raise ConfigError(err.message, field=err.field, fix=err.fix) from err
    docs = _parse(text, path, ConfigError)
    if len(docs) > 1:
        raise ConfigError("expected one YAML document", field=path, fix="remove the extra ---")
    try:
        return Config.from_dict(docs[0] if docs else None)
    except ConfigError as err:
        raise ConfigError(err.message, field=f"{path}: {err.field}", fix=err.fix) from err


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
