"""An API client from a kubeconfig, the pod's service account, or the default kubeconfig, in that order."""

from __future__ import annotations

import os

import kubernetes.client
import kubernetes.config

from webhook.errors import ClusterConfigError

KUBECONFIG_FLAG = "--kubeconfig"


def api_client_from(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An API client from `kubeconfig` if given, else the pod's service account, else the default kubeconfig.

    Raises ClusterConfigError naming the fix when none of them works.
    """
    configuration = kubernetes.client.Configuration()
    if kubeconfig is not None:
        try:
            _load_kubeconfig(kubeconfig, configuration)
        except Exception as error:
            raise ClusterConfigError(
                f"cannot use kubeconfig {kubeconfig!r}: {_one_line(error)}",
                field=KUBECONFIG_FLAG,
                fix=f"pass {KUBECONFIG_FLAG} with a readable kubeconfig file whose current context names "
                "a cluster and a user",
            ) from error
        return kubernetes.client.ApiClient(configuration)
    try:
        # The client's config loaders carry no annotations, hence the ignores on these two calls.
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return kubernetes.client.ApiClient(configuration)
    except kubernetes.config.ConfigException as error:
        not_in_pod = _one_line(error)
    # Read $KUBECONFIG now, not at import as the client's default does, so the environment wins.
    default = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        _load_kubeconfig(default, configuration)
    except Exception as error:
        raise ClusterConfigError(
            f"no Kubernetes API configuration: not running in a pod ({not_in_pod}) and the default "
            f"kubeconfig {default!r} is unusable ({_one_line(error)})",
            field=KUBECONFIG_FLAG,
            fix=f"pass {KUBECONFIG_FLAG} PATH, set KUBECONFIG, or run in-cluster with a service account",
        ) from error
    return kubernetes.client.ApiClient(configuration)


def _load_kubeconfig(path: str, configuration: kubernetes.client.Configuration) -> None:
    # The loader raises ConfigException, OSError, YAML and type errors alike for bad files, so callers
    # catch Exception; persist_config=False because a webhook must never rewrite a user's kubeconfig.
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, client_configuration=configuration, persist_config=False
    )


def _one_line(error: Exception) -> str:
    # YAML errors span several lines; a config error should read as one sentence in a log or terminal.
    return " ".join(str(error).split()) or type(error).__name__
