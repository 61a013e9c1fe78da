"""The JSON API described as OpenAPI 3.1 (GET /api/openapi.json), for scripts and tools that integrate.

Why written out here rather than generated from the handlers: the handlers are
plain Starlette functions, and the description says what a caller may rely on
(fields, statuses, errors), which no handler signature holds.
tests/test_console_openapi.py checks that every /api/ route is described and
every described path is served.
"""

from __future__ import annotations

from typing import Any

from camwatch import __version__
from camwatch.core.types import STATES
from camwatch.service.console.operate import ACTIONS

_ERROR = {"description": "a one-line error; nothing was changed",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_CAMERA_ID = {"name": "camera_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "a camera id of the config (any other is a 404)"}
_JPEG = {"description": "a JPEG (ETag; If-None-Match answers 304)", "content": {"image/jpeg": {}}}


def _json(ref: str, what: str) -> dict[str, Any]:
    return {"description": what, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params if params is not None else [_CAMERA_ID],
                    "responses": {"200": ok, "404": _ERROR}}}


_SUMMARY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"},
        "state": {"type": "string", "enum": [*STATES, "pending"]},
        "kind": {"type": ["string", "null"], "description": "a drifted view's kind"},
        "similarity": {"type": ["number", "null"]}, "threshold": {"type": ["number", "null"]},
        "last_check_age": {"type": ["number", "null"], "description": "seconds"},
        "checked_at": {"type": ["number", "null"], "description": "unix time"},
        "silenced": {"type": "boolean"},
        "silenced_until": {"type": ["number", "null"], "description": "unix time"},
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "camwatch console API", "version": __version__,
             "description": "Every camera's state, views and history, and operators' actions. Reading needs "
                            "nothing; an action needs the console token (settings.console.token)."},
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                      "description": "the console token; wrong ones are rate-limited per address"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "CameraSummary": _SUMMARY,
            "Fleet": {"type": "object", "properties": {
                "cameras": {"type": "array", "items": {"$ref": "#/components/schemas/CameraSummary"},
                            "description": "what needs a person first"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "total": {"type": "integer"}, "time": {"type": "number"}}},
            "Camera": {"allOf": [{"$ref": "#/components/schemas/CameraSummary"}, {"type": "object", "properties": {
                "url": {"type": "string", "description": "redacted: never a password"},
                "enabled": {"type": "boolean"}, "enabled_in_config": {"type": "boolean"},
                "disabled_by": {"type": ["string", "null"]}, "silenced_by": {"type": ["string", "null"]},
                "interval": {"type": "number"},
                "references": {"type": "array", "items": {"type": "object"}},
                "events": {"type": "array", "items": {"type": "object"}},
                "audit": {"type": "array", "items": {"type": "object"},
                          "description": "operators' actions, newest first: type, by, time, message"}}}]},
            "History": {"type": "object", "properties": {"bucket_s": {"type": "integer"}, "points": {
                "type": "array", "items": {"type": "object", "properties": {
                    "t": {"type": "number"}, "similarity_min": {"type": "number"}, "threshold": {"type": "number"},
                    "checks": {"type": "integer"}, "drifted": {"type": "integer"}}}}}},
            "Scene": {"type": "object", "properties": {
                "reference": {"type": ["integer", "null"]}, "columns": {"type": ["integer", "null"]},
                "rows": {"type": ["integer", "null"]}, "views": {"type": "integer"},
                "cells": {"type": ["array", "null"], "items": {"type": "string"},
                          "description": "a row per string: s stable, b busy, . flat"}}},
            "ActionBody": {"type": "object", "properties": {
                "by": {"type": "string", "description": "who acts, for the events log (default: api)"},
                "label": {"type": "string", "description": "accept, add-reference"},
                "for": {"type": "string", "description": "silence: a period such as 2h, 30m, 1d (at most 30 days)"},
                "reference": {"type": "string", "description": "remove-reference: the reference id"},
                "confirm": {"type": "string", "enum": ["yes"], "description": "remove-reference"}}},
            "ActionDone": {"type": "object", "properties": {
                "camera": {"type": "string"}, "action": {"type": "string"}, "done": {"type": "boolean"},
                "message": {"type": "string"}, "event": {"type": "string"}, "label": {"type": "string"},
                "until": {"type": "number"}, "reference": {"type": "string"}}},
        },
    },
    "paths": {
        "/api/openapi.json": _get("this description", {"description": "OpenAPI 3.1",
                                                       "content": {"application/json": {}}}, []),
        "/api/cameras": _get("every configured camera, what needs a person first, and counts per state",
                             _json("Fleet", "the fleet"), []),
        "/api/cameras/{camera_id}": _get("one camera: references, recent events, operators' actions",
                                         _json("Camera", "the camera")),
        "/api/cameras/{camera_id}/history": _get("24 hours of checks in five-minute points",
                                                 _json("History", "the history")),
        "/api/cameras/{camera_id}/scene": _get("the stable/busy map of the newest reference's learned scene",
                                               _json("Scene", "the map (cells null until learned)")),
        "/api/cameras/{camera_id}/{image}": _get(
            "a thumbnail: current.jpg, reference.jpg or difference.jpg", _JPEG,
            [_CAMERA_ID, {"name": "image", "in": "path", "required": True,
                          "schema": {"type": "string", "enum": ["current.jpg", "reference.jpg", "difference.jpg"]}}]),
        "/api/cameras/{camera_id}/events/{event_id}/evidence.jpg": _get(
            "an event's evidence picture (reference and view side by side)", _JPEG,
            [_CAMERA_ID, {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
        "/api/cameras/{camera_id}/{action}": {"post": {
            "summary": "an operator's action; recorded as an event naming who",
            "security": [{"token": []}],
            "parameters": [_CAMERA_ID, {"name": "action", "in": "path", "required": True,
                                        "schema": {"type": "string", "enum": list(ACTIONS)}}],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionBody"}}}},
            "responses": {"200": _json("ActionDone", "done"),
                          "202": _json("ActionDone", "asked: accept and add-reference are done at the next check"),
                          "400": _ERROR, "401": _ERROR, "404": _ERROR, "409": _ERROR, "429": _ERROR}}},
    },
}
