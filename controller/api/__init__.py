"""The OCP-compatible HTTP API: routes only. Reads come from the store, every change from the engine's
service; errors become OCP's envelope in one place (app.py). Who asks, and how much they send, is settled
before anything is read (gate.py); the OpenAPI document lists the real error answers (openapi.py). It
imports neither steps nor dispatch."""

from obstop.controller.api.app import create_app
from obstop.controller.api.deps import Controller

__all__ = ["Controller", "create_app"]
