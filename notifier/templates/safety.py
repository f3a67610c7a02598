"""Alert data is untrusted text: whatever Prometheus scraped, whatever anyone who can reach Alertmanager pushed.
These functions make it safe to show, one per concern, and every channel uses the same ones:

- `clean` removes what can disguise text (bidi overrides, zero-width characters) or break a terminal or a parser
  (control characters), and `clip` bounds a field, so that no single value can push a message past its provider's
  limit;
- `safe_url` lets only http and https links through: a `javascript:` or `data:` URL is shown as nothing;
- `escape_mrkdwn` is the one escape for Slack's mrkdwn, `header_line` the one for an email header. Telegram and
  email HTML are escaped by their Jinja environment's autoescape.
"""

from __future__ import annotations

import re

# Bidi embeddings, overrides and isolates; zero-width spaces and joiners; the word joiner and the BOM: characters
# that change how text reads without being seen.
_INVISIBLE = "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"
# C0 and C1 control characters except tab and newline, which keep their meaning in a description.
_CONTROL = "".join(chr(c) for c in (*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)))
_DROP = str.maketrans("", "", _INVISIBLE + _CONTROL)
_WHITESPACE = re.compile(r"\s+")
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "ˋ"})

MAX_URL = 2048  # a longer link is more likely a payload than an address; it is left out
MAX_HEADER = 250  # an email Subject longer than this is clipped (RFC 5322 recommends lines under 78, folded)


def clean(text: str) -> str:
    """The text without invisible and control characters (tab and newline stay)."""
    return text.translate(_DROP)


def one_line(text: str) -> str:
    """Clean, on one line, runs of white space as one space."""
    return _WHITESPACE.sub(" ", clean(text)).strip()


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_url(url: str) -> str:
    """The URL if it is an http(s) link of sane length without white space or controls, else ''."""
    u = url.strip()
    if len(u) > MAX_URL or not u.lower().startswith(("http://", "https://")):
        return ""
    if u != clean(u) or _WHITESPACE.search(u):
        return ""
    return u


def escape_mrkdwn(value: str) -> str:
    """Slack mrkdwn: `&`, `<` and `>` as entities, so that no `<!channel>`, `<@U…>`, `<#C…>` or `<url|text>` can
    come from alert data; a backtick as a look-alike, since mrkdwn has no escape for it and it would end a code
    span."""
    return value.translate(_MRKDWN)


def header_line(text: str, limit: int = MAX_HEADER) -> str:
    """An email header value: one line, clean, clipped."""
    return clip(one_line(text), limit)
