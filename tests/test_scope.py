"""What the installed webhook is called for: the chart's namespaceSelector (kube-system, its own namespace,
webhook.excludeNamespaces; namespaceSelector and objectSelector), read from the chart's values."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.config import SYSTEM_NAMESPACES, never_judged
from webhook.core.scope import EVERYTHING, installed_scope
from webhook.errors import ConfigError


def test_defaults_leave_out_kube_system_and_the_webhook_namespace() -> None:
    scope = installed_scope("iow-system")
    assert SYSTEM_NAMESPACES == ("kube-system",)
    assert scope.excluded == never_judged("iow-system") == ("kube-system", "iow-system")
    assert scope.unseen("kube-system", {}, {}) == "kube-system"
    assert scope.unseen("iow-system", {}, {}) == "iow-system"
    assert scope.unseen("default", {}, {}) == ""
    assert never_judged("") == ("kube-system",)
    assert EVERYTHING.unseen("kube-system", {}, {}) == ""


def test_the_chart_values_narrow_it_further() -> None:
    scope = installed_scope("iow-system", {
        "excludeNamespaces": ["monitoring", "kube-system"],
        "namespaceSelector": {"matchLabels": {"team": "platform"},
                              "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["legacy"]}]},
        "objectSelector": {"matchExpressions": [{"key": "skip-immutable-os", "operator": "DoesNotExist"}]},
    })  # fmt: skip
    assert scope.excluded == ("kube-system", "iow-system", "monitoring")
    platform = {"team": "platform"}
    assert scope.unseen("monitoring", platform, {}) == "monitoring"
    assert scope.unseen("apps", platform, {}) == ""
    assert scope.unseen("apps", {}, {}) == "webhook.namespaceSelector"
    assert scope.unseen("apps", {**platform, "tier": "legacy"}, {}) == "webhook.namespaceSelector"
    assert scope.unseen("apps", platform, {"skip-immutable-os": "yes"}) == "webhook.objectSelector"


def test_the_namespace_name_label_is_matched_as_the_apiserver_sets_it() -> None:
    scope = installed_scope("iow", {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}})  # fmt: skip
    assert (
        scope.unseen("team-a", {}, {}) == "" and scope.unseen("team-b", {}, {}) == "webhook.namespaceSelector"
    )


BAD: list[tuple[str, Any, str]] = [
    ("excludeNamespaces not a list", {"excludeNamespaces": "monitoring"}, "webhook.excludeNamespaces"),
    ("unknown selector key", {"namespaceSelector": {"matchLabel": {}}}, "webhook.namespaceSelector"),
    ("label value not a string", {"objectSelector": {"matchLabels": {"a": 1}}}, "webhook.objectSelector.matchLabels"),
    ("node operator", {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}},
     "webhook.namespaceSelector.matchExpressions[0].operator"),
    ("no operator", {"namespaceSelector": {"matchExpressions": [{"key": "a"}]}},
     "webhook.namespaceSelector.matchExpressions[0].operator"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_name_the_field(values: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        installed_scope("iow", values)
    assert err.value.field == field and err.value.fix
