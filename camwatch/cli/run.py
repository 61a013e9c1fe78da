"""``camwatch [run] --config F``: the daemon in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from camwatch.cli.main import leave
from camwatch.service.daemon import Daemon


def cli_run(args: argparse.Namespace) -> int:
    """Start the daemon, run it until a stop signal, stop it; exits 0 on SIGTERM/SIGINT.

    After an orderly stop (scheduler stopped, events and references closed,
    everything durable already on disk) the process leaves with ``leave``
    (``os._exit``): a camera's reader thread may still sit inside FFmpeg, and
    letting the interpreter finalise under it aborts the process ("FATAL:
    exception not rethrown") or waits for it, which a hung camera must never cause.
    """
    daemon = Daemon(args.config)
    daemon.install_signals()
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    try:
        code = daemon.run_forever()
    finally:
        daemon.stop()
    leave(code)
