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

The package by concern: `settings` (what a config holds, its defaults and
limits), `checks` (the checks of each model table and of file_mode), `files`
(the file's text, its default path, names confined to the configured roots),
`airflow_table` (the [airflow] table, read alone by DAG files at parse time).
Every public name is importable from `lpmon.config`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from lpmon.config.airflow_table import airflow_settings, check_airflow
from lpmon.config.checks import EMAIL, check_file_mode, check_ranges, check_table, control_characters
from lpmon.config.files import confined, default_path, read_text
from lpmon.config.settings import (
    LIMITS,
    MAX_CONFIG_BYTES,
    METHODS,
    MIN_SAMPLE_SIZE,
    AirflowSettings,
    ConfigError,
    ModelSettings,
)
from lpmon.ids import MODEL_ID, model_id_problem

__all__ = [
    "EMAIL",
    "LIMITS",
    "MAX_CONFIG_BYTES",
    "METHODS",
    "MIN_SAMPLE_SIZE",
    "MODEL_ID",  # its old home: lpmon.ids has it
    "AirflowSettings",
    "Config",
    "ConfigError",
    "ModelSettings",
    "airflow_settings",
    "confined",
    "control_characters",
    "default_path",
    "load",
    "read_text",
]


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


_ENV_DEFAULTS = {
    "LPMON_GATE_PCT": ("gate_pct", float),
    "LPMON_SAMPLE_SIZE": ("sample_size", int),
    "LPMON_RECIPIENTS": ("recipients", lambda v: tuple(x.strip() for x in v.split(",") if x.strip())),
}


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
    defaults = check_table(data.get("defaults", {}), ModelSettings(), "defaults", problems)
    for variable, (name, convert) in _ENV_DEFAULTS.items():
        if variable in environ:
            try:
                defaults = replace(defaults, **{name: convert(environ[variable])})
            except ValueError:
                problems.append(f"{variable}: not a valid {name}: {environ[variable]!r}")
                continue
            check_ranges(defaults, variable, {name: True}, problems)
    models = {}
    raw_models = data.get("models", {})
    if not isinstance(raw_models, dict) or not raw_models:
        problems.append("models: at least one [models.<id>] table is needed")
        raw_models = {}
    for model_id, values in raw_models.items():
        if model_id_problem(model_id):
            problems.append(f"models.{model_id}: {model_id_problem(model_id)}")
            continue
        settings = check_table(values, defaults, f"models.{model_id}", problems)
        for key in ("traffic",) + (() if settings.scorer == "logged" else ("snapshot",)):
            value = getattr(settings, key)
            if not value:
                problems.append(f"models.{model_id}.{key}: required")
            elif not value.isprintable():
                problems.append(f"models.{model_id}.{key}: control characters in the path: {value!r}")
            elif "://" not in value and not Path(value).is_absolute():
                settings = replace(settings, **{key: str(base / value)})
        models[model_id] = settings
    airflow = check_airflow(data.get("airflow", {}), problems)
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
    mode = check_file_mode(data.get("file_mode"), problems)
    if problems:
        raise ConfigError(f"{path}: invalid configuration:\n  - " + "\n  - ".join(problems))
    return Config(path, store, dirs["plans_dir"], models, dirs["work_dir"], airflow, mode)
