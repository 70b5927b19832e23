"""The fake's gateway: a websocket speaking Discord's protocol in text JSON frames.

HELLO, then IDENTIFY (token and intents checked and recorded), then READY and one GUILD_CREATE per
guild of the session's shard; heartbeats are ACKed, member chunks answered, resumes honoured.
Dispatches injected by the test or caused by REST calls go to every identified session whose intents
and shard cover them, with message content withheld from sessions without the message-content intent,
as Discord does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .payloads import guild_create_payload, member_payload, user_payload, without_message_content
from .permissions import PRIVILEGED_INTENTS, Intent

if TYPE_CHECKING:
    from .server import FakeDiscord
    from .state import MessageRecord

_log = logging.getLogger(__name__)

#: The interval Discord gives in HELLO today. A test may give another (``FakeDiscord``'s
#: ``heartbeat_interval_ms``): the client must heartbeat at whatever interval HELLO says.
#: https://discord.com/developers/docs/events/gateway#sending-heartbeats
HEARTBEAT_INTERVAL_MS = 41_250

# Opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

# Close codes.
UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED, AUTHENTICATION_FAILED = 4001, 4002, 4003, 4004
ALREADY_AUTHENTICATED, DISALLOWED_INTENTS = 4005, 4014

EVENT_INTENTS: dict[str, Intent] = {
    "GUILD_CREATE": Intent.GUILDS,
    "GUILD_DELETE": Intent.GUILDS,
    "GUILD_ROLE_CREATE": Intent.GUILDS,
    "GUILD_ROLE_UPDATE": Intent.GUILDS,
    "CHANNEL_CREATE": Intent.GUILDS,
    "THREAD_CREATE": Intent.GUILDS,
    "GUILD_MEMBER_ADD": Intent.GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": Intent.GUILD_MEMBERS,
    "GUILD_MEMBER_REMOVE": Intent.GUILD_MEMBERS,
    "GUILD_BAN_ADD": Intent.GUILD_MODERATION,
    "GUILD_BAN_REMOVE": Intent.GUILD_MODERATION,
    "MESSAGE_CREATE": Intent.GUILD_MESSAGES,
    "MESSAGE_UPDATE": Intent.GUILD_MESSAGES,
    "MESSAGE_DELETE": Intent.GUILD_MESSAGES,
    "MESSAGE_DELETE_BULK": Intent.GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": Intent.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intent.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_ALL": Intent.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE_EMOJI": Intent.GUILD_MESSAGE_REACTIONS,
}
"""The intent a session needs for each guild event; unlisted events (INTERACTION_CREATE) need none."""


@dataclass(frozen=True)
class IdentifyRecord:
    """What a client sent in IDENTIFY."""

    token: str
    intents: int
    shard: tuple[int, int]
    properties: dict[str, Any]
    large_threshold: int | None
    presence: dict[str, Any] | None


@dataclass
class GatewaySession:
    """One websocket connection and the session it identified."""

    ws: web.WebSocketResponse
    session_id: str = ""
    intents: int = 0
    shard: tuple[int, int] = (0, 1)
    sequence: int = 0
    ready: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: When each heartbeat (op 1) arrived, on the event loop's clock; each was ACKed at once.
    heartbeats: list[float] = field(default_factory=list)

    def covers(self, guild_id: int | None) -> bool:
        """Whether this session's shard receives the guild's events (guild_id >> 22) % shard count."""
        if guild_id is None:
            return self.shard[0] == 0
        return (guild_id >> 22) % self.shard[1] == self.shard[0]

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        async with self.send_lock:
            frame: dict[str, Any] = {"op": op, "d": data, "s": None, "t": event}
            if op == DISPATCH:
                self.sequence += 1
                frame["s"] = self.sequence
            if self.ws.closed:
                return
            await self.ws.send_str(json.dumps(frame))


class Gateway:
    """Accepts gateway connections and fans dispatches out to them."""

    def __init__(self, fake: FakeDiscord, heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS) -> None:
        self._fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: list[GatewaySession] = []
        self.identifies: list[IdentifyRecord] = []
        self._resumable: dict[str, GatewaySession] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = GatewaySession(ws=ws)
        hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
        await session.send(HELLO, hello)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    await ws.close(code=DECODE_ERROR, message=b"Error while decoding payload.")
                    break
                await self._on_frame(session, frame)
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
                self._fake.notifier.notify()
        return ws

    async def _on_frame(self, session: GatewaySession, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            session.heartbeats.append(asyncio.get_running_loop().time())
            await session.send(HEARTBEAT_ACK, None)
        elif op == IDENTIFY:
            await self._identify(session, data or {})
        elif op == RESUME:
            await self._resume(session, data or {})
        elif not session.ready:
            await session.ws.close(code=NOT_AUTHENTICATED, message=b"Not authenticated.")
        elif op == REQUEST_GUILD_MEMBERS:
            await self._send_member_chunk(session, data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            _log.debug("fake gateway: ignoring op %s", op)
        else:
            await session.ws.close(code=UNKNOWN_OPCODE, message=b"Unknown opcode.")

    async def _identify(self, session: GatewaySession, data: dict[str, Any]) -> None:
        if session.ready:
            await session.ws.close(code=ALREADY_AUTHENTICATED, message=b"Already authenticated.")
            return
        shard = data.get("shard") or [0, 1]
        record = IdentifyRecord(
            token=str(data.get("token")),
            intents=int(data.get("intents", 0)),
            shard=(int(shard[0]), int(shard[1])),
            properties=dict(data.get("properties") or {}),
            large_threshold=data.get("large_threshold"),
            presence=data.get("presence"),
        )
        self.identifies.append(record)
        self._fake.notifier.notify()
        if record.token != self._fake.token:
            await session.ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        if record.intents & PRIVILEGED_INTENTS & ~self._fake.privileged_intents:
            await session.ws.close(code=DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        session.session_id = secrets.token_hex(16)
        session.intents = record.intents
        session.shard = record.shard
        fake = self._fake
        guilds = [g for g in fake.state.guilds.values() if session.covers(g.id)]
        await session.send(
            DISPATCH,
            {
                "v": 10,
                "user": user_payload(fake.bot_user) | {"verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": fake.gateway_url,
                "shard": list(session.shard),
                "application": {"id": str(fake.application_id), "flags": fake.application_flags},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["us-west"],
                "auth": {},
                "user_settings": {},
                "_trace": ["fake-gateway"],
            },
            "READY",
        )
        for guild in guilds:
            await session.send(
                DISPATCH, guild_create_payload(guild, fake.state, intents=session.intents), "GUILD_CREATE"
            )
        session.ready = True
        self.sessions.append(session)
        self._resumable[session.session_id] = session
        self._fake.notifier.notify()

    async def _resume(self, session: GatewaySession, data: dict[str, Any]) -> None:
        previous = self._resumable.get(str(data.get("session_id")))
        if previous is None or data.get("token") != self._fake.token:
            await session.send(INVALID_SESSION, False)
            return
        # Events sent while the client was away are not replayed: the fake dispatches only to live sessions.
        session.session_id = previous.session_id
        session.intents = previous.intents
        session.shard = previous.shard
        session.sequence = int(data.get("seq") or previous.sequence)
        session.ready = True
        self.sessions.append(session)
        self._resumable[session.session_id] = session
        await session.send(DISPATCH, {"_trace": ["fake-gateway"]}, "RESUMED")
        self._fake.notifier.notify()

    async def _send_member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self._fake.state.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        user_ids = {int(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0)
        if user_ids:
            members = [m for m in guild.members.values() if m.id in user_ids]
        else:
            members = [m for m in guild.members.values() if m.user.username.lower().startswith(query)]
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [member_payload(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in user_ids - {m.id for m in members}],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await session.send(DISPATCH, chunk, "GUILD_MEMBERS_CHUNK")

    async def dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None, message: MessageRecord | None = None
    ) -> int:
        """Send a dispatch to every session entitled to it; returns how many received it.

        ``message`` marks a MESSAGE_CREATE/UPDATE whose content a session without the message-content
        intent must not see (unless the message is the bot's own or mentions it).
        """
        needed = EVENT_INTENTS.get(event)
        delivered = 0
        for session in list(self.sessions):
            if not session.covers(guild_id):
                continue
            if needed is not None and not session.intents & needed:
                continue
            payload = data
            if message is not None and not self._may_read_content(session, message):
                payload = without_message_content(data)
            await session.send(DISPATCH, payload, event)
            delivered += 1
        return delivered

    def _may_read_content(self, session: GatewaySession, message: MessageRecord) -> bool:
        bot_id = self._fake.bot_user.id
        return bool(
            session.intents & Intent.MESSAGE_CONTENT
            or message.guild_id is None
            or message.author.id == bot_id
            or bot_id in message.mention_user_ids
        )

    async def close_all(self, code: int = 1001) -> None:
        """Close every connection (on shutdown, or to make a client reconnect)."""
        for session in list(self.sessions):
            await session.ws.close(code=code, message=b"Fake Discord is closing the connection.")
        self.sessions.clear()
