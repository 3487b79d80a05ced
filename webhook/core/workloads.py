"""Where the pod spec lives in each kind we judge, and a typed, validating view over it.

A Deployment's pods are judged through `spec.template`; a CronJob's through
`spec.jobTemplate.spec.template`. Field paths in findings and JSONPatch paths both start from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from webhook.errors import ManifestError, UnsupportedKindError, shown

_TEMPLATE = ("spec", "template")
# kind -> path of the pod template (an object with `metadata` and `spec`); () means the object is the pod.
POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": _TEMPLATE,
    "ReplicaSet": _TEMPLATE,
    "StatefulSet": _TEMPLATE,
    "DaemonSet": _TEMPLATE,
    "Job": _TEMPLATE,
    "ReplicationController": _TEMPLATE,
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}
SUPPORTED_KINDS = tuple(POD_TEMPLATE_PATHS)
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")


class Container(NamedTuple):
    """One container of any of the three lists, with the field path that names it in messages. (A named
    tuple: a pod's containers are read for every review, and a tuple is the cheapest value to make.)"""

    spec_field: str  # where the pod spec is, e.g. "spec" or "spec.template.spec"
    list_name: str  # containers, initContainers or ephemeralContainers
    position: int  # in its list
    name: str
    raw: Mapping[str, Any]

    @property
    def field(self) -> str:
        """e.g. "spec.initContainers[0]" (spelled out only for a message)."""
        return f"{self.spec_field}.{self.list_name}[{self.position}]"


@dataclass(frozen=True)
class PodSpecView:
    """The pod spec of a reviewed object, where it sits (`template_path`) and its pod metadata."""

    kind: str
    template_path: tuple[str, ...]
    spec: Mapping[str, Any]
    metadata: Mapping[str, Any]

    @cached_property
    def spec_field(self) -> str:
        """Dotted field path of the pod spec for messages, e.g. `spec.template.spec`."""
        return ".".join((*self.template_path, "spec"))

    def field(self, *parts: str) -> str:
        return ".".join((self.spec_field, *parts)).replace(".[", "[")

    @property
    def annotations(self) -> Mapping[str, str]:
        value = self.metadata.get("annotations") or {}
        return value if isinstance(value, Mapping) else {}

    def flag(self, name: str) -> bool:
        value = self.spec.get(name, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ManifestError(f"expected true or false, got {shown(value)}", field=self.field(name))
        return value

    def string(self, name: str) -> str | None:
        value = self.spec.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ManifestError(f"expected a string, got {shown(value)}", field=self.field(name))
        return value

    def mapping(self, *path: str) -> Mapping[str, Any] | None:
        node: Any = self.spec
        for depth, part in enumerate(path):
            node = node.get(part) if isinstance(node, Mapping) else None
            if node is None:
                return None
            if not isinstance(node, Mapping):
                raise ManifestError(
                    f"expected an object, got {type(node).__name__}", field=self.field(*path[: depth + 1])
                )
        result: Mapping[str, Any] = node
        return result

    def objects(
        self, name: str, within: Mapping[str, Any] | None = None, where: str | Callable[[], str] = ""
    ) -> list[Any]:
        """A list of objects (volumes, tolerations, ...) with its shape checked; `where` (or a function
        that spells it, called only for an error) names it in messages."""
        source = self.spec if within is None else within
        value = source.get(name) or []
        if type(value) is list and all(type(item) is dict for item in value):
            return list(value)  # what decoded JSON holds: no per-item ABC checks, no field path
        where = (where() if callable(where) else where) or self.field(name)
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ManifestError(f"expected a list, got {type(value).__name__}", field=where)
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise ManifestError(f"expected an object, got {type(item).__name__}", field=f"{where}[{i}]")
        return list(value)

    def containers(self) -> Iterator[Container]:
        return iter(self._containers)

    @cached_property
    def _containers(self) -> tuple[Container, ...]:
        # Read once per view: every check walks them (a malformed list raises on the first walk).
        spec_field = self.spec_field
        return tuple(
            Container(spec_field, list_name, i, str(raw.get("name", f"#{i}")), raw)
            for list_name in CONTAINER_FIELDS
            for i, raw in enumerate(self.objects(list_name))
        )


def pod_spec_view(obj: Mapping[str, Any], kind: str | None = None) -> PodSpecView:
    """The pod spec inside `obj`; raises UnsupportedKindError for kinds that carry none."""
    kind = kind or obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError("missing kind", field="kind", fix="set kind: Pod, Deployment, ...")
    path = POD_TEMPLATE_PATHS.get(kind)
    if path is None:
        raise UnsupportedKindError(
            f"{kind} carries no pod spec we judge",
            field="kind",
            fix=f"supported kinds: {', '.join(SUPPORTED_KINDS)}",
        )
    template: Any = obj
    for depth, part in enumerate(path):
        template = template.get(part) if isinstance(template, Mapping) else None
        if not isinstance(template, Mapping):
            raise ManifestError(
                "missing or not an object",
                field=".".join(path[: depth + 1]),
                fix=f"a {kind} needs {'.'.join(path)}",
            )
    spec = template.get("spec")
    metadata = template.get("metadata") or {}
    where = ".".join((*path, "spec"))
    if not isinstance(spec, Mapping):
        raise ManifestError("missing or not an object", field=where, fix="give the pod spec")
    if not isinstance(metadata, Mapping):
        raise ManifestError("expected an object", field=".".join((*path, "metadata")))
    return PodSpecView(kind, path, spec, metadata)
