"""Labelled traffic: the Parquet store, schema checks, deterministic sampling, imports."""

from .sample import Sample, request_hash, sample, to_batch
from .schema import EmptyDay, MissingDay, TrafficError, TrafficSchema
from .store import TrafficStore, as_day

__all__ = [
    "EmptyDay",
    "MissingDay",
    "Sample",
    "TrafficError",
    "TrafficSchema",
    "TrafficStore",
    "as_day",
    "request_hash",
    "sample",
    "to_batch",
]
