"""``camwatch [run] --config F``: the daemon in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from camwatch.cli.main import leave
from camwatch.config import load_config
from camwatch.service.daemon import Daemon
from camwatch.store.lock import lock_state_dir


def cli_run(args: argparse.Namespace) -> int:
    """Lock the state directory, start the daemon, run it until a stop signal, stop it; exits 0 on SIGTERM/SIGINT.

    The state directory's lock (``store.lock``) is taken first, before the
    model loads or a store opens, so a second daemon on the same state fails
    at once with the holder's pid (exit 2) instead of raising every alert a
    second time. It is never released by hand: the process holds it until it
    ends, however it ends, and the kernel drops it then.

    After an orderly stop (scheduler stopped, events and references closed,
    everything durable already on disk) the process leaves with ``leave``
    (``os._exit``): a camera's reader thread may still sit inside FFmpeg, and
    letting the interpreter finalise under it aborts the process ("FATAL:
    exception not rethrown") or waits for it, which a hung camera must never cause.
    """
    # Held by its open file, never closed here (StateLock has no finaliser): the kernel drops it at exit.
    lock_state_dir(load_config(args.config).settings.state_dir)
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
