"""What an app keeps on its state and makes on first use (memos, gates: one event loop per app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI

_T = TypeVar("_T")


def made_once(app: FastAPI, name: str, kind: type[_T], make: Callable[[], _T]) -> _T:
    """The app's ``name``, made by ``make`` the first time it is asked for."""
    found = getattr(app.state, name, None)
    if not isinstance(found, kind):
        found = make()
        setattr(app.state, name, found)
    return found
