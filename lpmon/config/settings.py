"""What a configuration holds: the per-model and [airflow] settings with their
defaults, the limits their values are checked against, and the error an
unusable file raises."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("minmax", "ema", "percentile", "l2", "l2_fast", "kl", "mse")


class ConfigError(ValueError):
    """An unusable configuration; the message lists every problem."""


@dataclass(frozen=True)
class ModelSettings:
    """Per-model settings; every field can be set in [defaults] or [models.<id>]."""

    traffic: str = ""
    snapshot: str = ""
    sample_size: int = 200_000
    max_sample_size: int = 0  # a close day scores more of its traffic, up to this many examples; 0: 10x sample_size
    sample_seed: int = 0
    sample_split_rows: int = 50_000_000  # a larger day is sampled per file group of ~this many rows, on several workers
    gate_pct: float = 0.05
    level: float = 0.95
    min_examples: int = 2_000  # labelled examples a verdict needs at least (one day or pooled)
    min_positives: int = 100
    max_halfwidth_gates: float = 2.0  # a verdict's interval: +- at most this many gates, unless it decides
    window_days: int = 7  # a small day pools the trailing days under its plan, up to this many
    sequential_run_length_days: float = 1000.0  # days between false DEGRADED verdicts at a dNE at the gate, on average
    segments: tuple[str, ...] = ()  # traffic columns whose values are judged one by one (country, surface)
    calibration_method: str = "l2"
    calibration_days: int = 1
    embedding_precision: str = "int8"
    embedding_layout: str = "prepack"  # "tbe": row-wise tables as TorchRec/FBGEMM's TBE serves them
    healthy_days_to_reenable: int = 3
    cooldown_days: int = 7  # units a promotion changed are not re-enabled for this long
    validation_max_examples: int = 200_000  # held-out examples a validation may draw, at most
    validation_days: int = 7  # earlier days' traffic a validation may draw from
    max_backfill_days: int = 366  # the longest range `lpmon backfill` runs at once
    recipients: tuple[str, ...] = ()
    max_ids_per_row: int = 10_000  # ids in one row of a multi-hot column (more: the day fails)
    ts_tolerance_hours: float = 12.0  # how far `ts` may stray outside its partition's day
    runbook_url: str = ""  # linked from the model's alert emails (http:// or https://)
    backend: str = "numpy"  # "torch": score with PyTorch/FBGEMM (pip install 'lpmon[torch]')
    scorer: str = "model"  # "logged": serving logs both predictions beside label (no snapshot)
    p_ref_column: str = "p_ref"  # (scorer = "logged") the reference (fp32) model's logged prediction
    p_q_column: str = "p_q"  # (scorer = "logged") the served (quantized) model's logged prediction

    @property
    def sample_cap(self) -> int:
        """max_sample_size, its default (0) being 10x sample_size."""
        return self.max_sample_size or 10 * self.sample_size


@dataclass(frozen=True)
class AirflowSettings:
    """The [airflow] table: what the DAGs need beyond the models."""

    monitor_schedule: str = "@daily"  # lpmon_monitor's schedule (cron or preset): one data interval a run
    monitor_catchup: bool = True  # with a start_date: run every missed day since it
    recalibrate_schedule: str = "@weekly"  # lpmon_recalibrate's schedule
    start_date: str = ""  # the first day lpmon_monitor covers; none: from the last complete day
    timezone: str = "UTC"  # the zone whose midnights bound a monitored day
    base_url: str = "http://localhost:8080"  # for links to runs in emails and pages ("": no web server)
    smtp_conn_id: str = "smtp_default"
    task_retries: int = 2  # retries of every lpmon task (with exponential backoff)
    retry_delay_s: int = 20  # the first retry's delay
    partition_wait_s: int = 0  # wait up to this long after a day ends for its partition's marker
    partition_marker: str = "_SUCCESS"  # the file that says a day's partition is complete
    partition_poke_s: int = 300  # how often the wait looks for the marker


# Upper bounds: a typo of a few zeros must not ask a worker for terabytes.
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB: anything larger is the wrong file
MIN_SAMPLE_SIZE = 100  # the sample is halved (calibration, evaluation) and needs both labels
LIMITS = {
    "sample_size": 100_000_000,
    "min_examples": 100_000_000,
    "healthy_days_to_reenable": 365,
    "calibration_days": 90,
    "cooldown_days": 365,
    "validation_max_examples": 100_000_000,
    "max_ids_per_row": 10_000_000,
    "window_days": 90,
    "max_backfill_days": 36_600,
}
