"""Logging set-up: plain text or one JSON object per line, never a secret.

Every record passes through camwatch.core.secrets.scrub, by a filter on the
root handler, so a library that logs a URL cannot leak a camera password (or a
query value, or a fragment) either. The JSON form's extra fields are scrubbed
too: a ``reason`` or ``camera`` passed as ``extra=`` is text like any other.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from camwatch.core.secrets import scrub


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = scrub(msg)
        if record.exc_info:
            # Render the traceback now so it can be scrubbed too.
            clean += "\n" + scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


class _JsonFormatter(logging.Formatter):
    _EXTRA = ("camera", "event", "reason", "state", "similarity", "threshold", "structure", "kind", "provider")

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self._EXTRA:
            if hasattr(record, key):
                value = getattr(record, key)
                doc[key] = scrub(value) if isinstance(value, str) else value
        return json.dumps(doc, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScrubFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
