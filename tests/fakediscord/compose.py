"""Turning a client's message body into a stored message, as Discord does.

Shared by every way the bot writes a message: channel messages, interaction responses, followups
and their edits. Validates the body, resolves uploaded files into hosted attachments, and works out
who the message really mentions under its ``allowed_mentions``, so a test can assert that the bot
pinged nobody it should not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import validation
from .errors import FormErrors
from .permissions import Permission
from .recording import MultipartPart
from .state import AttachmentRecord, GuildRecord, MessageRecord, UserRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE_MENTION = re.compile(r"@(everyone|here)\b")

SUPPRESS_EMBEDS = 1 << 2
EDITABLE_FLAGS = SUPPRESS_EMBEDS
"""The only message flag a client may change on an existing message."""


@dataclass
class Mentions:
    user_ids: list[int]
    role_ids: list[int]
    everyone: bool


def resolve_mentions(
    content: str,
    allowed: dict[str, Any] | None,
    *,
    guild: GuildRecord | None,
    replied_author: UserRecord | None,
    may_mention_everyone: bool,
) -> Mentions:
    """Who a message pings: the mentions in its content that ``allowed_mentions`` lets through.

    Without ``allowed_mentions`` Discord parses everything and pings a replied-to author; with it,
    only the listed kinds or ids, and the replied-to author only if ``replied_user`` is true.
    """
    parse = set(allowed.get("parse", [])) if allowed is not None else {"users", "roles", "everyone"}
    listed_users = {int(u) for u in (allowed or {}).get("users", [])}
    listed_roles = {int(r) for r in (allowed or {}).get("roles", [])}
    user_ids: list[int] = []
    for match in _USER_MENTION.finditer(content):
        user_id = int(match.group(1))
        if ("users" in parse or user_id in listed_users) and user_id not in user_ids:
            user_ids.append(user_id)
    role_ids: list[int] = []
    for match in _ROLE_MENTION.finditer(content):
        role_id = int(match.group(1))
        known = guild is not None and role_id in guild.roles
        if known and ("roles" in parse or role_id in listed_roles) and role_id not in role_ids:
            role_ids.append(role_id)
    ping_replied = allowed.get("replied_user", False) if allowed is not None else True
    if replied_author is not None and ping_replied and replied_author.id not in user_ids:
        user_ids.append(replied_author.id)
    everyone = bool(_EVERYONE_MENTION.search(content)) and "everyone" in parse and may_mention_everyone
    return Mentions(user_ids=user_ids, role_ids=role_ids, everyone=everyone)


def _embeds(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "rich"} | embed for embed in payload.get("embeds") or []]


def _attachments(
    fake: FakeDiscord,
    payload: dict[str, Any],
    files: list[MultipartPart],
    existing: list[AttachmentRecord],
) -> list[AttachmentRecord]:
    """The attachments a body leaves on a message.

    ``payload["attachments"]`` lists them all: ``{"id": n}`` for this request's ``files[n]`` upload,
    the id of an attachment the message already has to keep it. Without that list Discord keeps the
    existing ones and appends every upload.
    """

    def upload(index: int, entry: dict[str, Any]) -> AttachmentRecord:
        part = files[index]
        # discord.py labels every upload application/octet-stream; the file name says more.
        content_type = part.content_type if part.content_type != "application/octet-stream" else None
        filename = entry.get("filename") or part.filename or "file"
        return fake.store_attachment(
            filename, part.data, content_type=content_type, description=entry.get("description")
        )

    entries = payload.get("attachments")
    if entries is None:
        return [*existing, *(upload(index, {}) for index in range(len(files)))]
    kept = {a.id: a for a in existing}
    result = []
    form = FormErrors()
    for position, entry in enumerate(entries):
        attachment_id = int(entry["id"])
        if attachment_id < len(files):
            result.append(upload(attachment_id, entry))
        elif attachment_id in kept:
            result.append(kept[attachment_id])
        else:
            form.add(
                ("attachments", position, "id"),
                "ATTACHMENT_NOT_FOUND",
                f"Unknown attachment {attachment_id}.",
            )
    form.raise_if_any()
    return result


def compose_new(
    fake: FakeDiscord,
    *,
    payload: dict[str, Any],
    files: list[MultipartPart],
    channel_id: int,
    guild: GuildRecord | None,
    author: UserRecord,
    extra_flags: int = 0,
) -> MessageRecord:
    """A new message from a create body, validated; the caller stores and announces it."""
    form = FormErrors()
    validation.check_message(payload, form)
    reference = payload.get("message_reference")
    referenced: MessageRecord | None = None
    if reference:
        target = fake.state.messages.get(int(reference.get("message_id", 0)))
        if target is not None and not target.deleted:
            referenced = target
        elif reference.get("fail_if_not_exists", True):
            form.add(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
    form.raise_if_any()
    attachments = _attachments(fake, payload, files, [])
    content = payload.get("content") or ""
    validation.check_not_empty(
        content=content,
        embeds=payload.get("embeds") or [],
        attachments=len(attachments),
        components=payload.get("components") or [],
        payload=payload,
    )
    mentions = resolve_mentions(
        content,
        payload.get("allowed_mentions"),
        guild=guild,
        replied_author=referenced.author if referenced is not None else None,
        may_mention_everyone=_may_mention_everyone(fake, guild, author),
    )
    message_reference = None
    if referenced is not None:
        message_reference = {
            "type": 0,
            "message_id": str(referenced.id),
            "channel_id": str(referenced.channel_id),
            "fail_if_not_exists": reference.get("fail_if_not_exists", True),
        }
        if referenced.guild_id is not None:
            message_reference["guild_id"] = str(referenced.guild_id)
    return MessageRecord(
        id=fake.state.snowflakes.new(),
        channel_id=channel_id,
        guild_id=guild.id if guild is not None else None,
        author=author,
        content=content,
        timestamp=fake.clock.now(),
        type=19 if referenced is not None else 0,
        flags=int(payload.get("flags") or 0) | extra_flags,
        tts=bool(payload.get("tts", False)),
        embeds=_embeds(payload),
        attachments=attachments,
        components=list(payload.get("components") or []),
        message_reference=message_reference,
        mention_user_ids=mentions.user_ids,
        mention_role_ids=mentions.role_ids,
        mention_everyone=mentions.everyone,
        nonce=str(payload["nonce"]) if payload.get("nonce") is not None else None,
    )


def apply_edit(
    fake: FakeDiscord,
    message: MessageRecord,
    *,
    payload: dict[str, Any],
    files: list[MultipartPart],
    guild: GuildRecord | None,
) -> None:
    """Apply an edit body to ``message``: only the fields present change, then it must not be empty."""
    form = FormErrors()
    validation.check_message(payload, form)
    form.raise_if_any()
    content = message.content
    if "content" in payload:
        content = payload["content"] or ""
    embeds = _embeds(payload) if "embeds" in payload else message.embeds
    components = list(payload.get("components") or []) if "components" in payload else message.components
    attachments = message.attachments
    if "attachments" in payload or files:
        attachments = _attachments(fake, payload, files, message.attachments)
    validation.check_not_empty(
        content=content, embeds=embeds, attachments=len(attachments), components=components, payload={}
    )
    if "content" in payload or "allowed_mentions" in payload:
        mentions = resolve_mentions(
            content,
            payload.get("allowed_mentions"),
            guild=guild,
            replied_author=None,
            may_mention_everyone=_may_mention_everyone(fake, guild, message.author),
        )
        message.mention_user_ids = mentions.user_ids
        message.mention_role_ids = mentions.role_ids
        message.mention_everyone = mentions.everyone
    if "flags" in payload and payload["flags"] is not None:
        message.flags = (message.flags & ~EDITABLE_FLAGS) | (int(payload["flags"]) & EDITABLE_FLAGS)
    message.content = content
    message.embeds = embeds
    message.components = components
    message.attachments = attachments
    message.flags &= ~MessageRecord.LOADING
    message.edited_timestamp = fake.clock.now()


def _may_mention_everyone(fake: FakeDiscord, guild: GuildRecord | None, author: UserRecord) -> bool:
    if guild is None or author.id not in guild.members:
        return False
    member = guild.members[author.id]
    return bool(guild.base_permissions(member, fake.clock.now()) & Permission.MENTION_EVERYONE)
