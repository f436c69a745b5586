"""The checks of a [defaults] or [models.<id>] table, key by key (types,
control characters) and then as a whole (ranges, names, addresses), and of the
top-level file_mode. Each problem is appended to `problems`, naming its key."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import fields, replace

from lpmon.config.settings import LIMITS, METHODS, MIN_SAMPLE_SIZE, ModelSettings

EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+")  # one plain address: no names, lists or header breaks


def check_file_mode(value, problems: list[str]) -> int | None:
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


def check_table(values, start: ModelSettings, where: str, problems: list[str]) -> ModelSettings:
    """`start` with the table's values: [defaults] over ModelSettings(), a model over the defaults."""
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
    check_ranges(settings, where, changes, problems)
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


def check_ranges(s: ModelSettings, where: str, changed: dict, problems: list[str]) -> None:
    """The settings as a whole; a problem is reported only for a key in `changed` (set at `where`)."""

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
    if s.max_sample_size and not s.sample_size <= s.max_sample_size <= LIMITS["sample_size"]:
        bad(
            "max_sample_size",
            f"must be between sample_size ({s.sample_size:,}) and {LIMITS['sample_size']:,} "
            f"(0: 10x sample_size), got {s.max_sample_size}",
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
    from lpmon.quant.precision import LAYOUTS, PRECISIONS  # not at DAG parse time: lpmon.quant loads numpy

    if s.embedding_precision not in PRECISIONS["embedding"]:
        bad("embedding_precision", f"must be {', '.join(PRECISIONS['embedding'])}, got {s.embedding_precision!r}")
    if s.embedding_layout not in LAYOUTS:
        bad("embedding_layout", f'must be "prepack" or "tbe", got {s.embedding_layout!r}')
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
