"""Structured logs: one JSON object per line on stderr.

Requests are logged as ``{"time", "event": "request", "listener", "method", "path",
"status", "duration_ms", "peer_uid", "peer_pid"}``; the daemon's start and stop, refused
peers and internal errors get their own events. Python ``logging`` records (aiohttp's
own warnings) are turned into ``{"event": "log"}`` lines, so stderr stays all JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class JsonLog:
    """Writes events as JSON lines to a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": _now(), "event": event, **fields},
                          separators=(",", ":"), default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass                     # a closed stderr must not break a request


class _Handler(logging.Handler):
    def __init__(self, log: JsonLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"level": record.levelname.lower(), "logger": record.name,
                                  "message": record.getMessage()}
        if record.exc_info:
            fields["traceback"] = logging.Formatter().formatException(record.exc_info)
        self.log.event("log", **fields)


def route_python_logging(log: JsonLog, level: int = logging.WARNING) -> logging.Handler:
    """Send the root logger's records (warnings and up) through ``log``."""
    handler = _Handler(log)
    handler.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return handler
