"""Small shared types."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["NOT_GIVEN", "BrowserStatus", "NotGiven", "Region", "check_int"]


class NotGiven:
    """Sentinel type of `NOT_GIVEN`: an option that was not passed (unlike `None`,
    which for `timeout` means "no bound")."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Final = NotGiven()


Region = Literal["us-east", "us-west", "eu-west", "ap-southeast"]
"""Geographic regions of browser sessions."""

BrowserStatus = Literal["active", "deleted", "all"]
"""Which browser sessions `list` returns."""


def check_int(value: object, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """`value` as an int in [`minimum`, `maximum`], or a TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value
