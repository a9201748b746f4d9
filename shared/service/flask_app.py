"""The Flask class of both services: Flask, with its per-call coroutine check answered once.

Flask passes every view, request hook and teardown function through `ensure_sync` on every
request, and that asks `inspect.iscoroutinefunction` each time: five Python calls per function,
a view and six hooks per request, a noticeable part of a /healthz answer. Once the app has
served a request its functions can no longer change (Flask refuses any setup after the first
request), so the answer for each registered function is kept, and from then on `ensure_sync`
is a lookup in that table, made in C (a Python method was still a call per view and hook);
anything else (a function from after_this_request, an error handler) is checked as Flask checks
it. The functions are looked up by hash: Flask's views, hooks and handlers are functions and
bound methods.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from flask import Flask


class ServiceFlask(Flask):
    _sync_functions: _SyncFunctions | None = None

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Before the first request (an app context at start-up runs teardown functions too)
        # hooks may still be added: nothing is kept yet.
        if not getattr(self, "_got_first_request", False):
            return super().ensure_sync(func)
        known = self._sync_functions = _SyncFunctions(self._registered_sync_functions())
        known.check = super().ensure_sync
        # From now on Flask's self.ensure_sync(f) is the table's own lookup, a call into C,
        # not a Python method: Flask makes it for the view and every hook of every request.
        self.ensure_sync = known.__getitem__  # type: ignore[method-assign, assignment]
        return known[func]

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


class _SyncFunctions(dict[Callable[..., Any], Callable[..., Any]]):
    """The registered functions that need no wrapping, each mapped to itself; any other
    function (one from after_this_request, an error handler) is checked as Flask checks it."""

    check: Callable[[Callable[..., Any]], Callable[..., Any]]

    def __missing__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return self.check(func)
