"""Placement: selector, affinity and taint matching; pool grouping; where a pod spec can land."""

from webhook.core.placement.analysis import Constraints, Placement, place
from webhook.core.placement.evidence import place_by_evidence
from webhook.core.placement.inventory import Classification, Inventory, Node, NodeClass, Pool, classify

__all__ = [
    "Classification",
    "Constraints",
    "Inventory",
    "Node",
    "NodeClass",
    "Placement",
    "Pool",
    "classify",
    "place",
    "place_by_evidence",
]
