"""lpmon's configuration: one TOML file listing the models, with defaults and
environment overrides. An invalid file is rejected at load with every problem
listed, each naming its key.

    store = "sqlite:////abs/lpmon.db" # state store URL (env LPMON_STORE): sqlite or postgresql
    plans_dir = "plans"               # where active plans are exported for serving
    file_mode = 0o644                 # mode of exported plans (default: the umask's, 0644 under 022)
    work_dir = "work"                 # a day's intermediate results between Airflow tasks
                                      # (shared by all workers, like the traffic store)

    [defaults]                        # apply to every model unless it overrides them
    gate_pct = 0.05
    recipients = ["oncall@example.com"]

    [models.ctr]
    traffic = "/data/traffic/ctr"     # store root or URI
    snapshot = "/data/models/ctr/snapshot"

Relative paths are taken relative to the file's directory. The file must be
a regular file of at most MAX_CONFIG_BYTES.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
import unicodedata
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lpmon.ids import MODEL_ID, model_id_problem  # noqa: F401 - MODEL_ID: its old home

METHODS = ("minmax", "ema", "percentile", "l2", "l2_fast", "kl", "mse")


class ConfigError(ValueError):
    """An unusable configuration; the message lists every problem."""


@dataclass(frozen=True)
class ModelSettings:
    """Per-model settings; every field can be set in [defaults] or [models.<id>]."""

    traffic: str = ""
    snapshot: str = ""
    sample_size: int = 200_000
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


@dataclass(frozen=True)
class AirflowSettings:
    """The [airflow] table: what the DAGs need beyond the models."""

    monitor_schedule: str = "@daily"  # lpmon_monitor's schedule (cron or preset): one data interval a run
    monitor_catchup: bool = True  # with a start_date: run every missed day since it
    recalibrate_schedule: str = "@weekly"  # lpmon_recalibrate's schedule
    start_date: str = ""  # the first day lpmon_monitor covers; none: from the last complete day
    timezone: str = "UTC"  # the zone whose midnights bound a monitored day
    base_url: str = "http://localhost:8080"  # for links to runs in emails and pages
    smtp_conn_id: str = "smtp_default"
    task_retries: int = 2  # retries of every lpmon task (with exponential backoff)
    retry_delay_s: int = 20  # the first retry's delay
    partition_wait_s: int = 0  # wait up to this long after a day ends for its partition's marker
    partition_marker: str = "_SUCCESS"  # the file that says a day's partition is complete
    partition_poke_s: int = 300  # how often the wait looks for the marker


@dataclass(frozen=True)
class Config:
    path: Path
    store: str
    plans_dir: Path
    models: dict[str, ModelSettings]
    work_dir: Path = Path("work")
    airflow: AirflowSettings = AirflowSettings()
    file_mode: int | None = None  # exported plans' mode; None: the umask's

    def model(self, model_id: str) -> ModelSettings:
        if model_id not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(f"{self.path}: no model {model_id!r} (models: {known})")
        return self.models[model_id]


EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+")  # one plain address: no names, lists or header breaks
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
_ENV_DEFAULTS = {
    "LPMON_GATE_PCT": ("gate_pct", float),
    "LPMON_SAMPLE_SIZE": ("sample_size", int),
    "LPMON_RECIPIENTS": ("recipients", lambda v: tuple(x.strip() for x in v.split(",") if x.strip())),
}


def confined(root: Path, *parts: str) -> Path:
    """root/parts..., refused unless it stays inside root: model ids and days name
    folders under the configured roots, and a hostile one (../, an absolute
    path) must not write elsewhere, whatever checked it before."""
    base = Path(root).resolve()
    if any(not part or "\0" in part for part in parts):
        raise ConfigError(f"{'/'.join(parts)!r}: not a name under {base}")
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise ConfigError(f"{'/'.join(parts)!r}: not a name under {base}")
    return path


def default_path() -> Path:
    return Path(os.environ.get("LPMON_CONFIG", "lpmon.toml"))


def load(path: str | Path | None = None, environ: dict | None = None) -> Config:
    path = Path(path) if path is not None else default_path()
    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    problems: list[str] = []
    base = path.parent.resolve()
    for key in sorted(set(data) - {"store", "plans_dir", "work_dir", "file_mode", "defaults", "models", "airflow"}):
        problems.append(f"{key}: unknown top-level key")
    defaults = _settings(data.get("defaults", {}), ModelSettings(), "defaults", problems)
    for variable, (name, convert) in _ENV_DEFAULTS.items():
        if variable in environ:
            try:
                defaults = replace(defaults, **{name: convert(environ[variable])})
            except ValueError:
                problems.append(f"{variable}: not a valid {name}: {environ[variable]!r}")
                continue
            _check_ranges(defaults, variable, {name: True}, problems)
    models = {}
    raw_models = data.get("models", {})
    if not isinstance(raw_models, dict) or not raw_models:
        problems.append("models: at least one [models.<id>] table is needed")
        raw_models = {}
    for model_id, values in raw_models.items():
        if model_id_problem(model_id):
            problems.append(f"models.{model_id}: {model_id_problem(model_id)}")
            continue
        settings = _settings(values, defaults, f"models.{model_id}", problems)
        for key in ("traffic",) + (() if settings.scorer == "logged" else ("snapshot",)):
            value = getattr(settings, key)
            if not value:
                problems.append(f"models.{model_id}.{key}: required")
            elif not value.isprintable():
                problems.append(f"models.{model_id}.{key}: control characters in the path: {value!r}")
            elif "://" not in value and not Path(value).is_absolute():
                settings = replace(settings, **{key: str(base / value)})
        models[model_id] = settings
    airflow = _airflow(data.get("airflow", {}), problems)
    store = environ.get("LPMON_STORE", data.get("store", f"sqlite:///{base / 'lpmon.db'}"))
    dirs = {}
    for key, default in (("plans_dir", "plans"), ("work_dir", "work")):
        value = environ.get(f"LPMON_{key.upper()}", data.get(key, default))
        if not isinstance(value, str) or not value:
            problems.append(f"{key}: must be a path")
            value = default
        dirs[key] = Path(value) if Path(value).is_absolute() else base / value
    where = "LPMON_STORE" if "LPMON_STORE" in environ else "store"
    from lpmon.store.url import StoreUrlError, check_store_url  # sqlalchemy: not at DAG parse time

    try:
        parsed = check_store_url(store)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database).is_absolute() and where == "store":
            store = f"sqlite:///{base / parsed.database}"  # like every path of the file: from its folder
    except StoreUrlError as err:
        problems.append(f"{where}: {err}")
    mode = _file_mode(data.get("file_mode"), problems)
    if problems:
        raise ConfigError(f"{path}: invalid configuration:\n  - " + "\n  - ".join(problems))
    return Config(path, store, dirs["plans_dir"], models, dirs["work_dir"], airflow, mode)


def read_text(path: Path) -> str:
    """A config file's text: a regular file (not a directory, device or FIFO,
    which could hang or exhaust memory) of at most MAX_CONFIG_BYTES, UTF-8."""
    try:
        with open(path, "rb", opener=_open_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{path}: not a regular file (a config is a TOML file)")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (set --config or LPMON_CONFIG)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a config file (set --config or LPMON_CONFIG)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes: not an lpmon config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None


def _open_nonblocking(path, flags):
    """Open without blocking on a FIFO (its check then refuses it)."""
    return os.open(path, flags | os.O_NONBLOCK)


def _file_mode(value, problems: list[str]) -> int | None:
    """file_mode: an integer (TOML 0o644) or an octal string ("0644"), at most 0o777."""
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value):
        value = int(value.replace("o", ""), 8)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        problems.append(f'file_mode: expected a permission mode such as 0o644 or "0644", got {value!r}')
        return None
    if not value & 0o400:
        problems.append(f"file_mode: {value:#o} would not let even the owner read the exported plans")
        return None
    return value


def control_characters(text: str) -> list[str]:
    """The control characters in text (C0, DEL, C1, line and paragraph separators), as U+XXXX."""
    return sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")})


def airflow_settings(path: str | Path | None = None) -> AirflowSettings:
    """Only the [airflow] table, for DAG files at parse time: reads the TOML
    file alone (no models checked, nothing else touched); defaults when the
    file is missing or unreadable, so a parse never fails on it (the tasks
    load the whole config and report its problems)."""
    try:
        data = tomllib.loads(read_text(Path(path or default_path())))
    except (ConfigError, tomllib.TOMLDecodeError):
        return AirflowSettings()
    problems: list[str] = []
    settings = _airflow(data.get("airflow", {}), problems)
    return AirflowSettings() if problems else settings


def _airflow(values, problems: list[str]) -> AirflowSettings:
    if not isinstance(values, dict):
        problems.append("airflow: must be a table")
        return AirflowSettings()
    changes, defaults = {}, AirflowSettings()
    for key, value in values.items():
        if key not in {f.name for f in fields(AirflowSettings)}:
            problems.append(f"airflow.{key}: unknown key")
        elif isinstance(getattr(defaults, key), bool):
            if not isinstance(value, bool):
                problems.append(f"airflow.{key}: expected true or false, got {value!r}")
            else:
                changes[key] = value
        elif isinstance(getattr(defaults, key), int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"airflow.{key}: expected a non-negative integer, got {value!r}")
            elif key == "partition_poke_s" and value < 1:
                problems.append(f"airflow.partition_poke_s: expected at least 1 (seconds), got {value!r}")
            else:
                changes[key] = value
        elif not isinstance(value, str) or not value:
            problems.append(f"airflow.{key}: expected a non-empty string, got {value!r}")
        elif key == "start_date" and not _is_date(value):
            problems.append(f"airflow.start_date: expected an ISO date (YYYY-MM-DD), got {value!r}")
        elif key == "timezone" and not _is_zone(value):
            problems.append(f"airflow.timezone: not a known time zone (e.g. UTC, Europe/Paris), got {value!r}")
        elif key == "partition_marker" and ("/" in value or value in (".", "..")):
            problems.append(f"airflow.partition_marker: a file name inside the partition, got {value!r}")
        else:
            changes[key] = value
    return replace(AirflowSettings(), **changes)


def _is_zone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False


def _is_date(text: str) -> bool:
    import datetime as dt

    try:
        dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False


def _settings(values, start: ModelSettings, where: str, problems: list[str]) -> ModelSettings:
    if not isinstance(values, dict):
        problems.append(f"{where}: must be a table")
        return start
    known = {f.name: f for f in fields(ModelSettings)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            problems.append(f"{where}.{key}: unknown key")
            continue
        default = getattr(ModelSettings(), key)
        problem = _check(key, value, default)
        if problem:
            problems.append(f"{where}.{key}: {problem}")
            continue
        changes[key] = tuple(value) if isinstance(default, tuple) else value
    settings = replace(start, **changes)
    _check_ranges(settings, where, changes, problems)
    return settings


def _check(key, value, default) -> str | None:
    if isinstance(default, bool) or isinstance(value, bool) and not isinstance(default, bool):
        return f"expected {type(default).__name__}, got {value!r}"
    if isinstance(default, float) and not isinstance(value, (int, float)):
        return f"expected a number, got {value!r}"
    if isinstance(default, int) and not isinstance(default, float) and not isinstance(value, int):
        return f"expected an integer, got {value!r}"
    if isinstance(default, str) and not isinstance(value, str):
        return f"expected a string, got {value!r}"
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) and key != "recipients" else []
    bad = sorted({c for text in texts if isinstance(text, str) for c in control_characters(text)})
    if bad:
        return f"control characters ({', '.join(bad)}) in {value!r}"
    if isinstance(default, tuple) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return f"expected a list of strings, got {value!r}"
    if isinstance(default, dict) and not (
        isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
    ):
        return f"expected a table of numbers, got {value!r}"
    return None


def _check_ranges(s: ModelSettings, where: str, changed: dict, problems: list[str]) -> None:
    def bad(key, message):
        if key in changed:
            problems.append(f"{where}.{key}: {message}")

    if not 0 < s.gate_pct <= 100:
        bad("gate_pct", f"must be a percentage above 0 and at most 100, got {s.gate_pct}")
    if not 0 < s.level < 1:
        bad("level", f"must be between 0 and 1, got {s.level}")
    for key, most in LIMITS.items():
        least = MIN_SAMPLE_SIZE if key == "sample_size" else 1
        if not least <= getattr(s, key) <= most:
            bad(
                key,
                f"must be between {least} and {most:,}, got {getattr(s, key)}"
                + (" (the sample is halved for calibration and evaluation)" if key == "sample_size" else ""),
            )
    if s.sample_split_rows < 0:
        bad("sample_split_rows", f"must be a number of rows (0: never split a day), got {s.sample_split_rows}")
    if not 0 <= s.ts_tolerance_hours <= 720:
        bad("ts_tolerance_hours", f"must be between 0 and 720 hours, got {s.ts_tolerance_hours}")
    if s.min_positives < 0:
        bad("min_positives", f"must not be negative, got {s.min_positives}")
    if s.calibration_method not in METHODS:
        bad("calibration_method", f"must be one of {', '.join(METHODS)}, got {s.calibration_method!r}")
    if (
        s.calibration_days > 1
        and s.calibration_method == "mse"
        and ("calibration_days" in changed or "calibration_method" in changed)
    ):
        problems.append(
            f"{where}.calibration_days: mse keeps raw values, so it cannot combine stored "
            "days: use 1 day or a histogram method (l2, kl, percentile, ...)"
        )
    if s.backend not in ("numpy", "torch"):
        bad("backend", f'must be "numpy" or "torch", got {s.backend!r}')
    if s.scorer not in ("model", "logged"):
        bad("scorer", f'must be "model" or "logged", got {s.scorer!r}')
    columns = {"p_ref_column": s.p_ref_column, "p_q_column": s.p_q_column}
    for key, column in columns.items():
        if not column or column in ("request_id", "label", "ts") or column.startswith(("dense_", "sparse_")):
            bad(key, f"must name a prediction column (not request_id, label, ts, dense_* or sparse_*), got {column!r}")
    if s.p_ref_column == s.p_q_column and ("p_ref_column" in changed or "p_q_column" in changed):
        problems.append(f"{where}.p_q_column: must differ from p_ref_column ({s.p_ref_column!r})")
    from lpmon.quant.precision import PRECISIONS  # not at DAG parse time: lpmon.quant loads numpy

    if s.embedding_precision not in PRECISIONS["embedding"]:
        bad("embedding_precision", f"must be {', '.join(PRECISIONS['embedding'])}, got {s.embedding_precision!r}")
    if not 0 < s.max_halfwidth_gates <= 100:
        bad("max_halfwidth_gates", f"must be above 0 and at most 100 (gates), got {s.max_halfwidth_gates}")
    if not 10 <= s.sequential_run_length_days <= 1_000_000:
        bad("sequential_run_length_days", f"must be between 10 and 1,000,000 days, got {s.sequential_run_length_days}")
    reserved = {"request_id", "label", "ts"}
    bad_segments = [c for c in s.segments if not c or c in reserved]
    if bad_segments or len(set(s.segments)) != len(s.segments):
        bad("segments", f"traffic column names, each once, not request_id, label or ts: got {list(s.segments)}")
    if not 0 <= s.validation_days <= 90:
        bad("validation_days", f"must be between 0 and 90, got {s.validation_days}")
    if s.runbook_url and not re.fullmatch(r"https?://[^\s<>\"]+", s.runbook_url):
        bad("runbook_url", f"must be an http:// or https:// URL, got {s.runbook_url!r}")
    bad_recipients = [r for r in s.recipients if not EMAIL.fullmatch(r) or control_characters(r)]
    if bad_recipients:
        controls = sorted({c for r in bad_recipients for c in control_characters(r)})
        bad(
            "recipients",
            f"not email addresses: {bad_recipients}"
            + (f" (control characters {', '.join(controls)})" if controls else ""),
        )
