"""Command line: argument parsing and dispatch only.

Each command's handler is a ``cli_*`` function in its own cli/ module (cli/ is
the only layer that prints or exits); the handlers are imported lazily, by name
in ``HANDLERS``, so ``camwatch --help`` stays fast and a broken optional part
cannot stop the others. Every ``CamwatchError`` becomes one line on stderr and its exit code;
nothing a user can cause ends in a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from camwatch import __version__
from camwatch.core.errors import CamwatchError
from camwatch.core.logs import configure
from camwatch.core.secrets import scrub

DEFAULT_CONFIG = os.environ.get("CAMWATCH_CONFIG", "/etc/camwatch/cameras.yaml")

# command name -> "module:function"; each function takes the parsed args, returns an exit code.
HANDLERS = {
    "run": "camwatch.cli.run:cli_run",
    "validate": "camwatch.cli.validate:cli_validate",
    "check": "camwatch.cli.check:cli_check",
    "enroll": "camwatch.cli.enroll:cli_enroll",
    "references": "camwatch.cli.enroll:cli_references",
    "events": "camwatch.cli.events:cli_events",
    "camera": "camwatch.cli.camera:cli_camera",
    "evaluate": "camwatch.cli.evaluate:cli_evaluate",
    "compare": "camwatch.cli.compare:cli_compare",
}


def _config_arg(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Only the top parser has the default: a sub-parser's default would overwrite
    # a --config given before the command (camwatch --config X enroll ...).
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG if top else argparse.SUPPRESS,
                   help=f"cameras YAML file (default: $CAMWATCH_CONFIG or {DEFAULT_CONFIG})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camwatch",
        description="Watch fixed cameras and alert when a view is moved, covered, blinded or defocused. "
                    "With no command, runs the daemon: camwatch --config cameras.yaml",
    )
    parser.add_argument("--version", action="version", version=f"camwatch {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("CAMWATCH_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default=os.environ.get("CAMWATCH_LOG_FORMAT", "text"),
                        choices=["text", "json"], help="json: one JSON object per line")
    _config_arg(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (the default)")
    _config_arg(p)

    p = sub.add_parser("validate", help="check a config file and print every problem")
    _config_arg(p)
    p.add_argument("--owners", action="store_true",
                   help="in a fleet (settings.cluster), also list the members that check each camera")

    p = sub.add_parser("check", help="check cameras now; exit 0 all as enrolled, 1 any drifted, 2 any error")
    _config_arg(p)
    p.add_argument("cameras", nargs="*", metavar="CAMERA", help="camera ids (default: all enabled)")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = sub.add_parser("enroll", help="store the current view (or an image) as a camera's reference")
    _config_arg(p)
    p.add_argument("cameras", nargs="*", metavar="CAMERA")
    p.add_argument("--all", action="store_true", help="every enabled camera")
    p.add_argument("--label", default="default", help="e.g. day, night (default: default)")
    p.add_argument("--image", help="enrol this image file instead of a live frame (one camera)")

    p = sub.add_parser("references", help="list or remove stored references")
    _config_arg(p)
    rs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = rs.add_parser("list", help="list references")
    _config_arg(q)
    q.add_argument("--camera", help="only this camera")
    q.add_argument("--json", action="store_true")
    q = rs.add_parser("remove", help="remove references by id, or all of a camera's")
    _config_arg(q)
    q.add_argument("ids", nargs="*", type=int, metavar="ID")
    q.add_argument("--camera", help="remove every reference of this camera")

    p = sub.add_parser("camera", help="an operator's action: silence, unsilence, disable, enable, "
                                      "add-reference, remove-reference")
    _config_arg(p)
    p.add_argument("action", choices=["silence", "unsilence", "disable", "enable", "add-reference",
                                      "remove-reference"], metavar="ACTION",
                   help="silence CAMERA 2h | unsilence | disable | enable | add-reference CAMERA LABEL | "
                        "remove-reference CAMERA ID")
    p.add_argument("camera", metavar="CAMERA")
    p.add_argument("argument", nargs="?", metavar="ARG", help="the period, label or reference id")
    p.add_argument("--by", help="who acts, for the events log (default: your login name)")

    p = sub.add_parser("events", help="list drift and availability events")
    _config_arg(p)
    p.add_argument("--camera", help="only this camera")
    p.add_argument("--since", help="ISO time or a duration such as 2h, 3d")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=200)

    p = sub.add_parser("evaluate", help="score a drift-bench case folder")
    p.add_argument("cases", metavar="CASES_DIR")
    p.add_argument("--scores", metavar="OUT.csv",
                   help="write query,score,drifted rows, then why: the kind named, the deciding rule, the "
                        "similarity and threshold, and the learned scene's cues")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")
    p.add_argument("--plot", metavar="ROC.png", help="write the ROC curve")
    p.add_argument("--method", default="model",
                   help="model (default), or a baseline: ssim, edges")
    p.add_argument("--no-calibration", action="store_true",
                   help="ignore the cases' calibration frames")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("compare", help="compare two images: similarity, confidence and a verdict")
    p.add_argument("image_a", metavar="IMAGE_A")
    p.add_argument("image_b", metavar="IMAGE_B")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")
    p.add_argument("--crop", choices=["none", "face"], default="none",
                   help="face: embed only the largest face (MTCNN; pip install 'camwatch[face]')")
    p.add_argument("--json", action="store_true")
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    configure(args.log_level, args.log_format)
    try:
        code = int(_resolve(HANDLERS[command])(args) or 0)
    except CamwatchError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            # Errors already name secrets only masked; scrubbing again is the last line of defence.
            print(f"camwatch: {scrub(line)}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    if argv is None and threading.active_count() > 1:
        leave(code)
    return code


def leave(code: int) -> NoReturn:
    """End the program now (also ``cli.run``'s way out after its orderly stop).

    A stream camera's reader thread (``enroll``/``check`` on a ``mode: stream``
    RTSP camera) can still sit inside FFmpeg when the command is done; letting
    the interpreter finalise under it aborted the process ("FATAL: exception
    not rethrown", exit -6) in 9 of 15 runs of ``camwatch enroll --all``, on
    OpenCV 4.14 and 5.0 alike. Everything durable is written by then; only
    called when running as the program (``argv is None``), never in-process.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
