"""The rule for model ids, in one place: the config and `lpmon world` apply it
alike. An id names folders (traffic, snapshots, plans, reports) and appears in
pages and mails, so it is a plain name: no path separators, no '..', no markup,
no control characters."""

from __future__ import annotations

import re

MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RULE = "a model id is letters, digits, '_', '.' and '-' (it names folders and report files)"


def model_id_problem(model_id) -> str:
    """ "" for a usable model id, else the rule it breaks."""
    if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id) or ".." in model_id:
        return RULE
    return ""
