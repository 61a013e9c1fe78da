"""The operator console: fleet and camera pages and a read-only JSON API, served by the daemon (docs/console.md).

Modules: ``snapshot`` (the last view each camera's check saw, as a small JPEG;
the pipeline fills it), ``data`` (what the pages and the API show, read from
the daemon's runtimes and stores), ``api`` and ``views`` (JSON and HTML),
``app`` (the Starlette routes) and ``server`` (uvicorn on its own listener, in
a daemon thread). This file imports none of them, so the pipeline can import
``snapshot`` without pulling in the web stack.
"""
