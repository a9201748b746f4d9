"""The Flask class of both services: Flask, with its per-call coroutine check answered once.

Flask passes every view, request hook and teardown function through `ensure_sync` on every
request, and that asks `inspect.iscoroutinefunction` each time: five Python calls per function,
a view and six hooks per request, a noticeable part of a /healthz answer. Once the app has
served a request its functions can no longer change (Flask refuses any setup after the first
request), so the answer for each registered function is kept; anything else (a function from
after_this_request, an error handler) is checked as Flask checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from flask import Flask


class ServiceFlask(Flask):
    _sync_functions: dict[Callable[..., Any], Callable[..., Any]] | None = None

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self._sync_functions
        if known is None:
            # Before the first request (an app context at start-up runs teardown functions
            # too) hooks may still be added: nothing is kept yet.
            if not getattr(self, "_got_first_request", False):
                return super().ensure_sync(func)
            known = self._sync_functions = self._registered_sync_functions()
        try:
            return known[func]
        except (KeyError, TypeError):  # not registered, or unhashable
            return super().ensure_sync(func)

    def _registered_sync_functions(self) -> dict[Callable[..., Any], Callable[..., Any]]:
        functions: list[Callable[..., Any]] = [
            *self.view_functions.values(),
            *self.teardown_appcontext_funcs,
        ]
        for registry in (
            self.before_request_funcs,
            self.after_request_funcs,
            self.teardown_request_funcs,
        ):
            for registered in registry.values():
                functions.extend(registered)
        return {f: f for f in functions if not iscoroutinefunction(f)}
