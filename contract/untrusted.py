"""Text from outside the app (a link's query, a run's folder name and files, a Hub repository) stays text: shown in
Markdown without becoming a link, an image or markup, and exported to CSV without becoming a formula."""

import html
import re

import pandas as pd

SHOWN_CHARS = 100                                         # the longest outside value echoed on the page
MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()|~<>])")    # markup anywhere in a line
LINE_START_SIGNS = re.compile(r"^([#+\-.!=>])")           # markup only where a line starts (a heading, a list)
WORD_JOINER = "\u2060"                                    # invisible: splits what a renderer would link by itself
AUTOLINKS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)  # in https://, www., an e-mail's @
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")         # OWASP CSV injection: what a spreadsheet evaluates


def plain(value, limit: int = SHOWN_CHARS) -> str:
    """`value` as Markdown that renders as its own characters (cut to `limit`, marked with …): HTML escaped,
    every Markdown sign backslash-escaped, line breaks as spaces, and an invisible word joiner inside what a
    renderer would make a link of by itself (https://, www., an e-mail's @)."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    escaped = MARKDOWN_SIGNS.sub(r"\\\1", html.escape(text, quote=False))
    escaped = LINE_START_SIGNS.sub(r"\\\1", escaped)
    return AUTOLINKS.sub(WORD_JOINER, escaped)


def chart_text(value, limit: int = SHOWN_CHARS) -> str:
    """`value` as Plotly text (a trace name, a tick, a legend entry, hover text) that shows its own characters:
    Plotly renders <a href>, <b>, <br> and other tags there and fills %{...} in hover templates, and decodes
    entities only after both, so escaped characters show as typed (cut to `limit`, marked with …)."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return html.escape(text, quote=False).replace("%", "&#37;")


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\":,]+)+/(?=[^\s/'\":,]+)")  # a path's folders, not its name


def without_folders(text: str) -> str:
    """Every absolute path in `text` cut to its last part (…/name): what is shown or published never says where
    files lie on the machine (a URL's path is left alone)."""
    return ABSOLUTE_PATH.sub("…/", text)


def csv_cell(value):
    """A cell a spreadsheet shows as text: a string starting with = + - @ (or a tab / carriage return) gets a
    leading apostrophe (OWASP's rule); numbers and everything else are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Every text cell neutralised with csv_cell; the header too (column names can come from run files)."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(csv_cell)
    safe.columns = [csv_cell(c) for c in safe.columns]
    return safe
