"""REST routes for answering interactions: the callback and the webhook followups and edits.

These routes are authorized by the interaction token in the path, not the bot token. They enforce
the interaction protocol: one callback per interaction, of a type valid for that interaction, within
3 s of its dispatch; followups and edits of the original response within the token's 15 minutes.
Breaking any of these is a violation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors, validation
from .compose import apply_edit, compose_new
from .errors import DiscordError, FormErrors
from .http_app import ApiRequest, RouteSpec
from .interactions import (
    ACK_WINDOW_SECONDS,
    ALLOWED_CALLBACKS,
    TOKEN_LIFETIME_SECONDS,
    CallbackType,
    InteractionCallback,
    InteractionRecord,
    InteractionType,
)
from .payloads import message_payload, user_payload
from .recording import MultipartPart
from .state import MessageRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

_WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"
CHAT_INPUT_COMMAND_MESSAGE = 20


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


class InteractionRoutes:
    """Handlers for ``/interactions/.../callback`` and ``/webhooks/{application_id}/{token}...``."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._state = fake.state

    def specs(self) -> list[RouteSpec]:
        return [
            RouteSpec(
                "POST", "/interactions/{webhook_id}/{webhook_token}/callback", self.callback, bot_auth=False
            ),
            RouteSpec("POST", _WEBHOOK, self.followup, bot_auth=False),
            RouteSpec("GET", _WEBHOOK + "/messages/@original", self.get_message, bot_auth=False),
            RouteSpec("PATCH", _WEBHOOK + "/messages/@original", self.edit_message, bot_auth=False),
            RouteSpec("DELETE", _WEBHOOK + "/messages/@original", self.delete_message, bot_auth=False),
            RouteSpec("GET", _WEBHOOK + "/messages/{message_id}", self.get_message, bot_auth=False),
            RouteSpec("PATCH", _WEBHOOK + "/messages/{message_id}", self.edit_message, bot_auth=False),
            RouteSpec("DELETE", _WEBHOOK + "/messages/{message_id}", self.delete_message, bot_auth=False),
        ]

    # The callback -------------------------------------------------------------------------------

    async def callback(self, request: ApiRequest) -> dict[str, Any] | None:
        record = self._fake.interactions.get(request.snowflake("webhook_id"))
        if record is None or record.token != request.params["webhook_token"]:
            raise DiscordError(404, 10062, "Unknown interaction", violation=True)
        if record.callback is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.", violation=True)
        if self._fake.clock.monotonic() - record.dispatched_at > ACK_WINDOW_SECONDS:
            raise DiscordError(404, 10062, "Unknown interaction", violation=True)
        body = request.payload
        kind = body.get("type")
        allowed = ALLOWED_CALLBACKS[record.type]
        if kind not in allowed:
            form = FormErrors()
            form.add(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {sorted(allowed)}.")
            form.raise_if_any()
        data = body.get("data") or {}
        message = await self._answer(record, CallbackType(kind), data, request.files)
        record.callback = InteractionCallback(type=CallbackType(kind), data=data)
        if not _truthy(request.query.get("with_response")):
            return None
        interaction: dict[str, Any] = {"id": str(record.id), "type": int(record.type)}
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            interaction |= {
                "response_message_id": str(message.id),
                "response_message_loading": message.loading,
                "response_message_ephemeral": message.ephemeral,
            }
            resource["message"] = message_payload(message, self._state)
        return {"interaction": interaction, "resource": resource}

    async def _answer(
        self, record: InteractionRecord, kind: CallbackType, data: dict[str, Any], files: list[MultipartPart]
    ) -> MessageRecord | None:
        """Carry out one callback type; returns the message it created or changed, if any."""
        if kind == CallbackType.CHANNEL_MESSAGE:
            record.original = await self._post(record, data, files)
            return record.original
        if kind == CallbackType.DEFERRED_CHANNEL_MESSAGE:
            # The "thinking" placeholder; editing @original fills it in.
            flags = MessageRecord.LOADING | (int(data.get("flags") or 0) & MessageRecord.EPHEMERAL)
            record.original = await self._store(self._placeholder(record, flags))
            return record.original
        if kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
            if record.source_message is None:
                raise errors.bad_request(50035, "This interaction has no message to update")
            record.original = record.source_message
            if kind == CallbackType.UPDATE_MESSAGE:
                await self._edit(record, record.source_message, data, files)
            return record.original
        form = FormErrors()
        if kind == CallbackType.AUTOCOMPLETE_RESULT:
            validation.check_autocomplete(data, form)
        else:
            validation.check_modal(data, form)
        form.raise_if_any()
        return None

    # Messages written through the interaction -----------------------------------------------------

    def _placeholder(self, record: InteractionRecord, flags: int) -> MessageRecord:
        return self._through_interaction(
            record,
            MessageRecord(
                id=self._state.snowflakes.new(),
                channel_id=record.channel.id,
                guild_id=record.guild.id,
                author=self._fake.bot_user,
                content="",
                timestamp=self._fake.clock.now(),
                flags=flags,
            ),
        )

    async def _post(
        self, record: InteractionRecord, data: dict[str, Any], files: list[MultipartPart]
    ) -> MessageRecord:
        message = compose_new(
            self._fake,
            payload=data,
            files=files,
            channel_id=record.channel.id,
            guild=record.guild,
            author=self._fake.bot_user,
        )
        return await self._store(self._through_interaction(record, message))

    def _through_interaction(self, record: InteractionRecord, message: MessageRecord) -> MessageRecord:
        """Mark a message as written by the bot through the interaction's webhook."""
        message.webhook_id = self._fake.application_id
        message.application_id = self._fake.application_id
        message.type = CHAT_INPUT_COMMAND_MESSAGE if record.type == InteractionType.APPLICATION_COMMAND else 0
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": int(record.type),
            "user": user_payload(record.member.user),
            "authorizing_integration_owners": {"0": str(record.guild.id)},
        }
        if record.source_message is not None:
            metadata["interacted_message_id"] = str(record.source_message.id)
        message.interaction_metadata = metadata
        return message

    async def _store(self, message: MessageRecord) -> MessageRecord:
        self._state.add_message(message)
        if not message.ephemeral:
            await self._fake.dispatch(
                "MESSAGE_CREATE",
                message_payload(message, self._state),
                guild_id=message.guild_id,
                message=message,
            )
        return message

    async def _edit(
        self,
        record: InteractionRecord,
        message: MessageRecord,
        data: dict[str, Any],
        files: list[MultipartPart],
    ) -> None:
        apply_edit(self._fake, message, payload=data, files=files, guild=record.guild)
        if not message.ephemeral:
            await self._fake.dispatch(
                "MESSAGE_UPDATE",
                message_payload(message, self._state),
                guild_id=message.guild_id,
                message=message,
            )

    # Webhook routes -----------------------------------------------------------------------------

    def _webhook_interaction(self, request: ApiRequest) -> InteractionRecord:
        record = self._fake.interaction_for_token(request.params["webhook_token"])
        if record is None or request.snowflake("webhook_id") != self._fake.application_id:
            raise DiscordError(404, 10015, "Unknown Webhook", violation=True)
        if self._fake.clock.monotonic() - record.dispatched_at > TOKEN_LIFETIME_SECONDS:
            raise errors.invalid_webhook_token()
        return record

    def _webhook_message(self, request: ApiRequest, record: InteractionRecord) -> MessageRecord:
        if "message_id" not in request.params:
            if record.original is None or record.original.deleted:
                raise DiscordError(404, 10008, "Unknown Message", violation=True)
            return record.original
        message_id = request.snowflake("message_id")
        for message in [record.original, *record.followups]:
            if message is not None and message.id == message_id and not message.deleted:
                return message
        raise errors.unknown("message")

    async def followup(self, request: ApiRequest) -> dict[str, Any] | None:
        record = self._webhook_interaction(request)
        if record.callback is None:
            raise DiscordError(404, 10015, "Unknown Webhook", violation=True)
        placeholder = record.original
        if placeholder is not None and placeholder.loading and not placeholder.deleted:
            # The first followup after a deferral fills in the "thinking" placeholder instead of posting
            # a new message, and keeps the deferral's ephemeral flag, as Discord does.
            await self._edit(record, placeholder, request.payload, request.files)
            message = placeholder
        else:
            message = await self._post(record, request.payload, request.files)
        record.followups.append(message)
        if not _truthy(request.query.get("wait")):
            return None
        return message_payload(message, self._state)

    async def get_message(self, request: ApiRequest) -> dict[str, Any]:
        record = self._webhook_interaction(request)
        return message_payload(self._webhook_message(request, record), self._state)

    async def edit_message(self, request: ApiRequest) -> dict[str, Any]:
        record = self._webhook_interaction(request)
        message = self._webhook_message(request, record)
        await self._edit(record, message, request.payload, request.files)
        if message is record.original:
            record.original_edits += 1
        return message_payload(message, self._state)

    async def delete_message(self, request: ApiRequest) -> None:
        record = self._webhook_interaction(request)
        message = self._webhook_message(request, record)
        message.deleted = True
        if not message.ephemeral:
            await self._fake.dispatch(
                "MESSAGE_DELETE",
                {
                    "id": str(message.id),
                    "channel_id": str(message.channel_id),
                    "guild_id": str(record.guild.id),
                },
                guild_id=record.guild.id,
            )
