"""Discord's error answers: status, JSON code and message, and whether the caller broke a rule.

Every error the fake answers is a :class:`DiscordError`. Those with ``violation=True`` are calls a
correct bot never makes (a malformed body, a second interaction response, a response after the
deadline, a route the fake does not know); the fake records them and the test fixture fails the test
that made one, unless the test declared it expected. Missing permissions and unknown ids are not
violations: Discord answers them during normal operation (a member left, a role moved) and the bot
must handle them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

UNKNOWN_ENTITY: dict[str, tuple[int, str]] = {
    "account": (10001, "Unknown Account"),
    "application": (10002, "Unknown Application"),
    "channel": (10003, "Unknown Channel"),
    "guild": (10004, "Unknown Guild"),
    "member": (10007, "Unknown Member"),
    "message": (10008, "Unknown Message"),
    "role": (10011, "Unknown Role"),
    "user": (10013, "Unknown User"),
    "emoji": (10014, "Unknown Emoji"),
    "webhook": (10015, "Unknown Webhook"),
    "ban": (10026, "Unknown Ban"),
    "interaction": (10062, "Unknown interaction"),
    "application_command": (10063, "Unknown application command"),
}
"""Discord's 404 codes by the kind of id that was not found."""

PATH_PARAMETER_ENTITY: dict[str, str] = {
    "guild_id": "guild",
    "channel_id": "channel",
    "message_id": "message",
    "user_id": "member",
    "member_id": "member",
    "role_id": "role",
    "emoji": "emoji",
    "webhook_id": "webhook",
    "webhook_token": "webhook",
    "application_id": "application",
    "command_id": "application_command",
    "attachment_id": "message",
}
"""Which kind of id each route parameter names, to pick the 404 an injected fault answers."""


class DiscordError(Exception):
    """An error answer in Discord's shape: ``{"code": ..., "message": ..., "errors": {...}}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        violation: bool = False,
    ) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.violation = violation

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends with this error."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def unknown(entity: str) -> DiscordError:
    """404 for an id that does not exist (or no longer does)."""
    code, message = UNKNOWN_ENTITY[entity]
    return DiscordError(404, code, message)


def missing_permissions() -> DiscordError:
    """403 when the bot lacks a permission or is below its target in the role hierarchy."""
    return DiscordError(403, 50013, "Missing Permissions")


def missing_access() -> DiscordError:
    """403 when the bot cannot see the channel at all."""
    return DiscordError(403, 50001, "Missing Access")


def cannot_edit_others() -> DiscordError:
    """403 for editing the content of someone else's message."""
    return DiscordError(403, 50005, "Cannot edit a message authored by another user")


def unauthorized() -> DiscordError:
    """401 for a missing or wrong bot token."""
    return DiscordError(401, 0, "401: Unauthorized", violation=True)


def invalid_webhook_token() -> DiscordError:
    """401 for an interaction token used after its 15 minutes."""
    return DiscordError(401, 50027, "Invalid Webhook Token", violation=True)


def route_not_implemented(method: str, path: str) -> DiscordError:
    """404 for a route the fake does not serve: either a typo in the bot or a gap in the fake."""
    return DiscordError(
        404, 0, f"404: Not Found ({method} {path} is not a route the fake serves)", violation=True
    )


def bad_request(code: int, message: str) -> DiscordError:
    """400 with a specific Discord error code (an empty message, too old to bulk delete, ...)."""
    return DiscordError(400, code, message, violation=True)


class FormErrors:
    """Collects field errors and raises them as one 400 "Invalid Form Body" (code 50035).

    Discord nests field errors by path, with list indexes as string keys:
    ``{"embeds": {"0": {"title": {"_errors": [{"code": ..., "message": ...}]}}}}``.
    """

    def __init__(self) -> None:
        self._errors: dict[str, Any] = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        """Record an error for the field at ``path``."""
        node = self._errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self._errors)

    def raise_if_any(self) -> None:
        """Raise the collected errors, if there are any."""
        if self._errors:
            raise DiscordError(400, 50035, "Invalid Form Body", errors=self._errors, violation=True)
