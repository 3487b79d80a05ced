"""The typed errors a user can cause, in one tree; each names the field and the fix.

WebhookError                  base; `str(err)` is the message a person acts on
├── ConfigError               a config file or value is wrong (field = dotted config key)
├── ReviewError               an AdmissionReview is malformed (field = JSON path in the review)
├── ManifestError             a manifest for `check` is unreadable or not an object we judge
│   ├── UnsupportedKindError  a well-formed object of a kind we do not judge
│   └── ManifestErrors        several of those at once: `check` reports every bad document in one run
├── NodeListError             a node inventory file is malformed
├── ClusterConfigError        no usable way to reach the Kubernetes API (field = the flag to fix)
└── CertificateError          a certificate, key or their inputs are unusable (field = the parameter)
    └── ServingCertificateError   the serving pair cannot serve TLS (field = the files)
Nothing user-caused surfaces as a traceback or an HTTP 500: the HTTP edge answers 400 or the configured
stance, and the CLI has one handler (webhook/cli/__init__.py: "error: <field>: <message> (<fix>)", exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence

SHOWN_VALUE_LENGTH = 80


def shown(value: object) -> str:
    """An offending value as a message quotes it: its repr, cut short (a review may carry megabytes)."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_LENGTH else text[: SHOWN_VALUE_LENGTH - 1] + "…"


class WebhookError(Exception):
    """Base of every user-caused error; `field` names where, `fix` says what to do."""

    def __init__(self, message: str, *, field: str = "", fix: str = "") -> None:
        self.message = message
        self.field = field
        self.fix = fix
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.field}: " if self.field else ""
        fix = f" ({self.fix})" if self.fix else ""
        return f"{where}{self.message}{fix}"


class ConfigError(WebhookError):
    """A configuration key or value is invalid."""


class ReviewError(WebhookError):
    """An AdmissionReview body is not a v1 AdmissionReview we can answer."""


class ManifestError(WebhookError):
    """A manifest given to `check` cannot be judged."""


class UnsupportedKindError(ManifestError):
    """A well-formed object whose kind carries no pod spec we judge."""


class ManifestErrors(ManifestError):
    """Several manifests cannot be judged; `str(err)` is one line per error, each "error:"-prefixed after the
    first (the CLI handler prefixes that), at most `SHOWN`."""

    SHOWN = 20

    def __init__(self, errors: Sequence[WebhookError]) -> None:
        self.errors = tuple(errors)
        super().__init__(f"{len(self.errors)} manifests cannot be judged")

    def describe(self) -> str:
        lines = [e.describe() for e in self.errors[: self.SHOWN]]
        if len(self.errors) > self.SHOWN:
            lines.append(f"and {len(self.errors) - self.SHOWN} more")
        return "\nerror: ".join(lines)


class NodeListError(WebhookError):
    """A node inventory (e.g. `kubectl get nodes -o yaml`) is malformed."""


class ClusterConfigError(WebhookError):
    """No usable way to reach the Kubernetes API (bad kubeconfig, not in a pod, no default kubeconfig)."""


class CertificateError(WebhookError):
    """A certificate, key, or an input to making one (lifetime, names, addresses) cannot be used."""


class ServingCertificateError(CertificateError):
    """The serving certificate and key cannot serve TLS (unreadable, mismatched, encrypted)."""
