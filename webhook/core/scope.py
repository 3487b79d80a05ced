"""What the installed webhook is called for, so that `check` and `scan` judge what it would see.

The chart's webhook configurations never send kube-system, the webhook's own namespace or
`webhook.excludeNamespaces` (a namespaceSelector on `kubernetes.io/metadata.name`), and narrow further by
`webhook.namespaceSelector` and `webhook.objectSelector`. `Scope` is that, read from the chart's values
(or just the defaults); `EVERYTHING` is `--include-system-namespaces`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.config import SelectorRequirement, never_judged, parse_requirement
from webhook.core.placement.selectors import requirement_matches
from webhook.errors import ConfigError

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
LABEL_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class LabelSelector:
    """A metav1.LabelSelector: every requirement must match (an empty one matches everything)."""

    requirements: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement_matches(r, labels) for r in self.requirements)


@dataclass(frozen=True)
class Scope:
    """The namespaces never sent to the webhook by name, and the selectors of its configurations."""

    excluded: tuple[str, ...] = ()
    namespace_selector: LabelSelector = LabelSelector()
    object_selector: LabelSelector = LabelSelector()

    def unseen(self, namespace: str, namespace_labels: Mapping[str, str],
               object_labels: Mapping[str, str]) -> str:  # fmt: skip
        """Why the installed webhook is never called for an object here: "" when it is; else the namespace
        (excluded by name), or the selector that leaves it out."""
        if namespace in self.excluded:
            return namespace
        if not self.namespace_selector.matches({**namespace_labels, NAMESPACE_NAME_LABEL: namespace}):
            return "webhook.namespaceSelector"
        if not self.object_selector.matches(object_labels):
            return "webhook.objectSelector"
        return ""


EVERYTHING = Scope()


def installed_scope(webhook_namespace: str, webhook_values: Mapping[str, Any] | None = None) -> Scope:
    """The scope of a chart installed in `webhook_namespace` with these `webhook:` values (None: defaults).
    ConfigError names the value (`webhook.namespaceSelector.matchExpressions[0].operator`) and the fix."""
    values = webhook_values or {}
    if not isinstance(values, Mapping):
        raise ConfigError("expected a mapping", field="webhook", fix="webhook: {excludeNamespaces: [...]}")
    extra = values.get("excludeNamespaces") or []
    if not isinstance(extra, list) or not all(isinstance(n, str) and n for n in extra):
        raise ConfigError("expected a list of namespace names", field="webhook.excludeNamespaces",
                          fix="e.g. [monitoring]")  # fmt: skip
    return Scope(
        tuple(dict.fromkeys((*never_judged(webhook_namespace), *extra))),
        _selector(values.get("namespaceSelector"), "webhook.namespaceSelector"),
        _selector(values.get("objectSelector"), "webhook.objectSelector"),
    )


def _selector(raw: Any, where: str) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping) or set(raw) - {"matchLabels", "matchExpressions"}:
        raise ConfigError("expected {matchLabels, matchExpressions}", field=where,
                          fix="a Kubernetes label selector")  # fmt: skip
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError("expected {label: value}", field=f"{where}.matchLabels", fix="quote the values")
    requirements = [SelectorRequirement(str(k), "In", (v,)) for k, v in labels.items()]
    expressions: Sequence[Any] = raw.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ConfigError(
            "expected a list", field=f"{where}.matchExpressions", fix="- {key: .., operator: ..}"
        )
    for i, raw_expression in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        requirement = parse_requirement(raw_expression, at)
        if requirement.operator not in LABEL_SELECTOR_OPERATORS:
            raise ConfigError(f"invalid operator {requirement.operator!r}", field=f"{at}.operator",
                              fix=f"use one of: {', '.join(LABEL_SELECTOR_OPERATORS)}")  # fmt: skip
        requirements.append(requirement)
    return LabelSelector(tuple(requirements))
