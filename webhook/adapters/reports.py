"""Writing `scan`'s reports into the cluster, replacing the previous run's instead of piling them up.

Each namespace gets one report with a fixed name and our managed-by label, written by server-side apply
under our own field manager (`force`: the results list is ours alone, replaced whole every run). Then our
reports (that name and that label) in namespaces that got none this time are deleted. Needs get, create,
patch and delete on reports of that name, and list on reports (docs/migration.md; the chart's
`reports` ClusterRole grants exactly that). A namespace being deleted takes no new objects: skipped.
"""

from __future__ import annotations

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
    terminating: tuple[str, ...] = ()  # namespaces being deleted: nothing can be written there

    def line(self) -> str:
        kind = self.api.kind
        line = f"wrote {len(self.applied)} {kind} ({self.api.api_version})"
        if self.deleted:
            line += f"; deleted the {kind} of {len(self.deleted)} namespaces with no workload left"
        if self.terminating:
            line += f"; skipped {len(self.terminating)} namespaces being deleted"
        return line


def _status(err: kubernetes.client.ApiException) -> Mapping[str, Any]:
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        return {}
    return body if isinstance(body, Mapping) else {}


def _terminating(err: kubernetes.client.ApiException) -> bool:
    """The apiserver refuses new objects in a namespace being deleted: 403, cause NamespaceTerminating."""
    causes = (_status(err).get("details") or {}).get("causes") or []
    return err.status == 403 and any(
        isinstance(c, Mapping) and c.get("reason") == "NamespaceTerminating" for c in causes
    )


def _refused(err: kubernetes.client.ApiException, what: str, api: ReportApi, name: str) -> ClusterConfigError:
    reason = _status(err).get("message") or err.reason
    if err.status == 404:
        fix = f"install the {api.plural}.{api.group} CRD"
    elif err.status in (401, 403):
        fix = (f"the identity needs get, create, patch and delete on {api.plural}.{api.group} named {name}, "
               f"and list on {api.plural}")  # fmt: skip
    else:
        fix = (
            f"the installed {api.plural}.{api.group} CRD does not take this report: install {api.api_version}"
        )
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
    applied: list[str] = []
    terminating: list[str] = []
    for item in reports:
        where = str(item["metadata"].get("namespace") or "")
        if not where:
            continue  # workloads are namespaced: scan makes no cluster reports
        try:
            custom.patch_namespaced_custom_object(
                api.group, api.version, where, api.plural, name, dict(item), field_manager=FIELD_MANAGER,
                force=True, field_validation="Strict", _content_type=APPLY_PATCH, _request_timeout=TIMEOUT,
            )  # fmt: skip
        except kubernetes.client.ApiException as err:
            if _terminating(err):
                terminating.append(where)
                continue
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
        keep = where in applied or where in terminating or bool(namespace and where != namespace)
        if meta.get("name") != name or not where or keep:
            continue
        try:
            custom.delete_namespaced_custom_object(
                api.group, api.version, where, api.plural, name, _request_timeout=TIMEOUT
            )
        except kubernetes.client.ApiException as err:
            if err.status != 404:
                raise _refused(err, f"deleting {api.kind} {where}/{name}", api, name) from err
        deleted.append(where)
    return Published(api, tuple(applied), tuple(sorted(deleted)), tuple(terminating))
