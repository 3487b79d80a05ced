"""The cluster shell: Node and Namespace list+watch into in-memory snapshots, and the optional node labeller.

`events` is the pure half (what each answer of the API does to a collection), `mirror` the thin loop that
does the HTTP around it, `client` builds the API client, `labeller` keeps `immutable-os.io/profile` on
immutable nodes with server-side apply.
"""

from webhook.adapters.cluster.client import api_client_from
from webhook.adapters.cluster.events import Collection, Snapshot, WireObject
from webhook.adapters.cluster.labeller import FIELD_MANAGER, NodeLabeller, server_side_apply
from webhook.adapters.cluster.mirror import (
    DEFAULT_BACKOFF,
    Backoff,
    ClusterMirror,
    ObjectMirror,
    OnChange,
    publish_to,
    watch_timeout_within,
)
from webhook.errors import ClusterConfigError

__all__ = [
    "DEFAULT_BACKOFF",
    "FIELD_MANAGER",
    "Backoff",
    "ClusterConfigError",
    "ClusterMirror",
    "Collection",
    "NodeLabeller",
    "ObjectMirror",
    "OnChange",
    "Snapshot",
    "WireObject",
    "api_client_from",
    "publish_to",
    "server_side_apply",
    "watch_timeout_within",
]
