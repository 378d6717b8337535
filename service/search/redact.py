"""Strip internal addresses from text a client reads; the full text belongs in the log.

Two levels: `without_urls` for /readyz, which operators read (it keeps a damaged file's path so
they know what to restore), and `for_clients` for API answers, which also hides server paths.
"""

from __future__ import annotations

import re

# scheme://anything-up-to-whitespace-or-quote, e.g. a remote reranker's or Elasticsearch's URL.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# An absolute path of two or more parts (/var/lib/fathom/x.db); "/v1/search"-like routes are
# not in the messages this sees, and one-part paths (e.g. "a/b" ratios) are left alone.
_PATH = re.compile(r"(?<![\w/:])(?:/[\w.@+-]+){2,}/?")


def without_urls(text: str) -> str:
    return _URL.sub("<url>", text)


def for_clients(text: str) -> str:
    return _PATH.sub("<path>", without_urls(text))
