"""The one Jinja2 environment of lpmon's outputs: the day report (HTML file and
mail body, plain text), the mail's subject and first line, and the lpmon page.

Templates live in lpmon/report/templates/ (shipped in the wheel as package data).
Autoescaping is on for every *.html template: every value from data (model ids,
layer names, reasons, links) is escaped unless a template marks it safe. The
*.txt templates are plain text (mail parts, subjects), never HTML.
"""

from __future__ import annotations

import functools

import jinja2


def version(number) -> str:
    """A plan as people read it: "v3", or what serves without one."""
    return f"v{number}" if number else "fp32 (no plan)"


def fixed(value, digits: int = 4, none: str = "-") -> str:
    return none if value is None else f"{value:.{digits}f}"


def count(value, none: str = "-") -> str:
    return none if value is None else f"{value:,}"


def one_line(text: str) -> str:
    """A template's words on one line (subjects, first lines): whitespace collapsed."""
    return " ".join(text.split())


@functools.cache
def environment() -> jinja2.Environment:
    from lpmon.pipeline.capacity import megabytes

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lpmon.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(version=version, fixed=fixed, count=count, megabytes=megabytes, one_line=one_line)
    return env


def render(name: str, **values) -> str:
    return environment().get_template(name).render(**values)
