"""Reading the Prometheus text of ``/metrics`` in tests: every sample by name
and labels, the samples of one family by one label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mpush.daemon.metrics import Metrics

__all__ = ["Samples", "labelled", "samples", "scrape"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample: (name, sorted labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def labelled(found: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` by the value of their ``label``."""
    return {dict(labels)[label]: v for (n, labels), v in found.items() if n == name}


def scrape(metrics: Metrics) -> Samples:
    return samples(metrics.exposition().decode())
