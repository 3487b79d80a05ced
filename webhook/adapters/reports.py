"""Writing `scan`'s reports into the cluster, replacing the previous run's instead of piling them up.

Each namespace gets one report with a fixed name and our managed-by label, written by server-side apply
under our own field manager (`force`: the results list is ours alone, replaced whole every run). Then our
reports (that name and that label) in namespaces that got none this time are deleted. Needs get, create,
patch and delete on reports of that name, and list on reports (docs/migration.md; the chart's
`reports` ClusterRole grants exactly that).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes.client

from webhook.core.report import MANAGED_BY_LABEL, POLICY_NAME, ReportApi
from webhook.errors import ClusterConfigError

FIELD_MANAGER = "immutable-os-webhook-scan"
APPLY_PATCH = "application/apply-patch+yaml"
TIMEOUT = (5.0, 30.0)


@dataclass(frozen=True)
class Published:
    api: ReportApi
    applied: tuple[str, ...]  # namespaces written
    deleted: tuple[str, ...]  # namespaces whose stale report was deleted

    def line(self) -> str:
        kind = self.api.kind
        gone = (
            f"; deleted the {kind} of {len(self.deleted)} namespaces with no workload left"
            if self.deleted
            else ""
        )
        return f"wrote {len(self.applied)} {kind} ({self.api.api_version}){gone}"


def _refused(err: kubernetes.client.ApiException, what: str, api: ReportApi, name: str) -> ClusterConfigError:
    reason = err.reason
    with contextlib.suppress(ValueError, AttributeError):
        reason = json.loads(err.body or "{}").get("message") or reason
    fix = (f"install the {api.group} CRDs" if err.status == 404 else
           f"the identity needs get, create, patch and delete on {api.plural}.{api.group} named "
           f"{name}, and list on {api.plural}")  # fmt: skip
    return ClusterConfigError(f"{what} failed: {err.status} {reason}", field="--apply", fix=fix)


def publish(
    api_client: kubernetes.client.ApiClient,
    reports: Sequence[Mapping[str, Any]],
    api: ReportApi,
    *,
    name: str = POLICY_NAME,
    namespace: str | None = None,
) -> Published:
    """Apply `reports` (namespaced, all called `name`) and delete our `name` reports elsewhere: in every
    other namespace, or only in `namespace` when the scan covered one."""
    custom = kubernetes.client.CustomObjectsApi(api_client)
    applied = []
    for item in reports:
        where = item["metadata"].get("namespace")
        if not where:
            continue  # workloads are namespaced: scan makes no cluster reports
        try:
            custom.patch_namespaced_custom_object(
                api.group, api.version, where, api.plural, name, dict(item), field_manager=FIELD_MANAGER,
                force=True, field_validation="Strict", _content_type=APPLY_PATCH, _request_timeout=TIMEOUT,
            )  # fmt: skip
        except kubernetes.client.ApiException as err:
            raise _refused(err, f"applying {api.kind} {where}/{name}", api, name) from err
        applied.append(where)
    try:
        listed = custom.list_cluster_custom_object(
            api.group, api.version, api.plural, label_selector=f"{MANAGED_BY_LABEL}={POLICY_NAME}",
            _request_timeout=TIMEOUT,
        )  # fmt: skip
    except kubernetes.client.ApiException as err:
        raise _refused(err, f"listing {api.plural}", api, name) from err
    deleted: list[str] = []
    items: list[Any] = listed.get("items") or [] if isinstance(listed, Mapping) else []
    for existing in items:
        meta = existing.get("metadata") or {}
        where = str(meta.get("namespace") or "")
        if meta.get("name") != name or not where or where in applied or (namespace and where != namespace):
            continue
        try:
            custom.delete_namespaced_custom_object(api.group, api.version, where, api.plural, name,
                                                   _request_timeout=TIMEOUT)  # fmt: skip
        except kubernetes.client.ApiException as err:
            if err.status != 404:
                raise _refused(err, f"deleting {api.kind} {where}/{name}", api, name) from err
        deleted.append(where)
    return Published(api, tuple(applied), tuple(sorted(deleted)))
