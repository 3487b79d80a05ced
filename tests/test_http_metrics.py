"""The review counts the service keeps in plain ints read as Prometheus counters and a histogram."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from webhook.adapters.http.metrics import LATENCY_BUCKETS, ReviewCounts


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_review_counts_scrape_as_counters_and_a_cumulative_histogram() -> None:
    registry = CollectorRegistry()
    counts = ReviewCounts(registry)
    for seconds in (LATENCY_BUCKETS[0], LATENCY_BUCKETS[0] * 1.01, 0.003, 99.0):
        counts.count("validate", "denied", "enforce", seconds)
    counts.count("mutate", "steered", "enforce", 0.0001)
    counts.found("validate", "host-path")
    counts.found("validate", "host-path")
    got = samples(registry)
    assert got[("immutable_os_webhook_reviews_total",
                (("decision", "denied"), ("endpoint", "validate"), ("mode", "enforce")))] == 4  # fmt: skip
    assert (
        got[("immutable_os_webhook_findings_total", (("check", "host-path"), ("endpoint", "validate")))] == 2
    )

    def bucket(le: str) -> float:
        return got[
            ("immutable_os_webhook_review_duration_seconds_bucket", (("endpoint", "validate"), ("le", le)))
        ]

    assert bucket("0.00025") == 1  # a value equal to a bound is counted in it (`le`)
    assert bucket("0.0005") == 2
    assert bucket("0.005") == 3
    assert bucket("2.5") == 3 and bucket("+Inf") == 4
    assert got[("immutable_os_webhook_review_duration_seconds_count", (("endpoint", "validate"),))] == 4
    total = got[("immutable_os_webhook_review_duration_seconds_sum", (("endpoint", "validate"),))]
    assert abs(total - (LATENCY_BUCKETS[0] * 2.01 + 0.003 + 99.0)) < 1e-9
