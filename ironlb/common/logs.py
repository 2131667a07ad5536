"""One logging set-up for every ironlb process: the same flags, the same JSON keys.

``ironlb controller``, ``ironlb speaker`` and ``ironlb forward`` (control
process and workers) all call :func:`add_logging_arguments` and
:func:`setup_logging`, so an operator configures and parses them alike:
``--log-format text|json`` and ``--log-level debug|info|warning|error``; JSON
lines carry ``ts, level, logger, process, msg`` plus any ``extra`` fields.
kopf's per-object extras are folded into one ``object`` key
(``namespace/name``) instead of its bulky ``settings``/``k8s_*`` fields.

Hand-written rather than a JSON-logging library because it is one small
formatter over the standard :mod:`logging` records, and the worker processes
(which log from uvloop) must stay cheap to start.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "add_logging_arguments",
    "setup_logging",
]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_KOPF_EXTRAS = {"k8s_skip", "k8s_ref", "settings"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "process", "msg", ...extra}`` on one line.

    ``ts`` is UTC with milliseconds (``2026-01-02T03:04:05.678Z``), ``level``
    lower-case; ``exc`` holds a traceback when the record has one.
    """

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self._process:
            out["process"] = self._process
        out["msg"] = record.getMessage()
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            namespace = ref.get("namespace")
            out["object"] = f"{namespace}/{ref['name']}" if namespace else str(ref["name"])
        for key, value in vars(record).items():
            if key in _RESERVED or key in _KOPF_EXTRAS or key.startswith("_"):
                continue
            out[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def _log_format(value: str) -> str:
    # "plain" is the controller's old spelling of "text" (kept as an alias).
    return "text" if value == "plain" else value


def add_logging_arguments(parser: argparse.ArgumentParser, *, verbose_alias: bool = False) -> None:
    """``--log-format`` and ``--log-level`` (and, if asked, the deprecated ``--verbose``)."""
    parser.add_argument(
        "--log-format",
        type=_log_format,
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text or one JSON object each (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="default: %(default)s"
    )
    if verbose_alias:
        parser.add_argument(
            "--verbose",
            dest="log_level",
            action="store_const",
            const="debug",
            help=argparse.SUPPRESS,  # deprecated: --log-level debug
        )


def setup_logging(fmt: str = "text", level: str = "info", process: str = "") -> None:
    """Configure the root logger (call once per process); ``process`` tags each line."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        tag = f" [{process}]" if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
