"""Kubernetes scheduling semantics for one node: node selector requirements, terms, taints, tolerations.

Follows k8s.io/component-helpers/scheduling/corev1: terms are ORed, expressions within a term ANDed;
an empty term matches nothing; NotIn and DoesNotExist match a missing label; Gt/Lt compare integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.config import SELECTOR_OPERATORS, SelectorRequirement
from webhook.errors import ManifestError, shown

NODE_NAME_FIELD = "metadata.name"
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def requirement_matches(req: SelectorRequirement, labels: Mapping[str, str]) -> bool:
    """Whether a node with `labels` meets `req`. An operator this code does not know (a newer API than
    ours) matches every node: placement then errs toward "could land there", which is the safe side."""
    value = labels.get(req.key)
    if req.operator == "In":
        return value is not None and value in req.values
    if req.operator == "NotIn":
        return value is None or value not in req.values
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if req.operator not in ("Gt", "Lt"):
        return True
    if value is None or len(req.values) != 1:
        return False
    have, bound = _label_integer(value), _label_integer(req.values[0])
    if have is None or bound is None:
        return False
    return have > bound if req.operator == "Gt" else have < bound


_INT64_MAX = 2**63 - 1


def _label_integer(text: str) -> int | None:
    """An integer as Go's strconv.ParseInt(text, 10, 64) reads a valid label value: digits only.

    Python's int() also takes `1_0`, whitespace and numbers past int64; Kubernetes matches none of them,
    and a sign cannot start a label value, so `-1` or `+9` make the requirement match nothing.
    """
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number <= _INT64_MAX else None


@dataclass(frozen=True)
class Term:
    """One nodeSelectorTerm: label requirements and field requirements (only metadata.name exists)."""

    expressions: tuple[SelectorRequirement, ...]
    fields: tuple[SelectorRequirement, ...]

    @property
    def empty(self) -> bool:
        return not self.expressions and not self.fields

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.empty:
            return False
        fields = {NODE_NAME_FIELD: name}
        return all(requirement_matches(r, labels) for r in self.expressions) and all(
            requirement_matches(r, fields) for r in self.fields
        )


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        if self.operator == "Equal":
            return self.key == taint.key and self.value == taint.value
        # An operator we don't know (e.g. the alpha Lt/Gt): assume it tolerates the taints of its key, so
        # placement errs toward "could land there".
        return not self.key or self.key == taint.key


def tolerated(
    taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...], effects: tuple[str, ...]
) -> bool:
    """Every taint with one of `effects` is tolerated (PreferNoSchedule never blocks)."""
    return all(any(t.tolerates(taint) for t in tolerations) for taint in taints if taint.effect in effects)


def _requirement(raw: Any, where: str, *, field_selector: bool = False) -> SelectorRequirement:
    if not isinstance(raw, Mapping):
        raise ManifestError("expected an object", field=where)
    key, operator, values = raw.get("key"), raw.get("operator"), raw.get("values") or []
    if not isinstance(key, str) or not key:
        raise ManifestError("missing key", field=f"{where}.key", fix="name a node label")
    if not isinstance(operator, str) or not operator:
        raise ManifestError(
            f"missing operator {shown(operator)}",
            field=f"{where}.operator",
            fix=f"use {', '.join(SELECTOR_OPERATORS)}",
        )
    if field_selector and key != NODE_NAME_FIELD:
        raise ManifestError(
            f"matchFields supports only {NODE_NAME_FIELD}",
            field=where,
            fix="use matchExpressions for labels",
        )
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ManifestError("values must be a list of strings", field=f"{where}.values", fix='e.g. ["a"]')
    return SelectorRequirement(key, operator, tuple(values))


def parse_terms(raw: Any, where: str) -> tuple[Term, ...]:
    if not isinstance(raw, list):
        raise ManifestError("expected a list", field=where, fix="- matchExpressions: [...]")
    terms = []
    for i, term in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(term, Mapping):
            raise ManifestError("expected an object", field=at)
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not isinstance(expressions, list) or not isinstance(fields, list):
            raise ManifestError("matchExpressions and matchFields must be lists", field=at)
        terms.append(
            Term(
                tuple(_requirement(e, f"{at}.matchExpressions[{j}]") for j, e in enumerate(expressions)),
                tuple(
                    _requirement(f, f"{at}.matchFields[{j}]", field_selector=True)
                    for j, f in enumerate(fields)
                ),
            )
        )
    return tuple(terms)


def parse_tolerations(raw: list[Any], where: str) -> tuple[Toleration, ...]:
    tolerations = []
    for i, t in enumerate(raw):
        operator = t.get("operator") or "Equal"
        if not isinstance(operator, str):
            raise ManifestError(
                f"expected a string, got {shown(operator)}",
                field=f"{where}[{i}].operator",
                fix="use Equal or Exists",
            )
        tolerations.append(
            Toleration(
                str(t.get("key") or ""), operator, str(t.get("value") or ""), str(t.get("effect") or "")
            )
        )
    return tuple(tolerations)
