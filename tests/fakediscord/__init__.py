"""A local Discord stand-in that the real discord.py client talks to in end-to-end tests.

:class:`FakeDiscord` (``server.py``) is the whole API a test uses; ``fixtures.py`` has the pytest
fixtures. Inside:

- ``state.py``: the model (guilds, roles, channels, members, messages) and Discord's permission rules.
- ``payloads.py``: the JSON shapes Discord sends; ``snowflakes.py``: ids and time.
- ``gateway.py``: the websocket; ``http_app.py``: the REST plumbing (auth, faults, recording).
- ``routes_core.py``, ``routes_messages.py``, ``routes_interactions.py``: the REST handlers.
- ``compose.py`` and ``validation.py``: message bodies, mentions and Discord's limits.
- ``interactions.py``: interaction payloads and the records tests await responses on.
- ``recording.py``: recorded calls, violations, injected faults; ``errors.py``: Discord's error answers.
"""

from .errors import DiscordError
from .gateway import IdentifyRecord
from .interactions import CallbackType, InteractionCallback, InteractionRecord, InteractionType
from .permissions import BOT_DEFAULT, EVERYONE_DEFAULT, Intent, Permission
from .recording import Fault, MultipartPart, RecordedCall, Violation
from .server import FakeDiscord
from .snowflakes import FakeClock, snowflake_time
from .state import (
    AttachmentRecord,
    ChannelRecord,
    ChannelType,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    PermissionOverwrite,
    RoleRecord,
    UserRecord,
)

__all__ = [
    "BOT_DEFAULT",
    "EVERYONE_DEFAULT",
    "AttachmentRecord",
    "CallbackType",
    "ChannelRecord",
    "ChannelType",
    "DiscordError",
    "FakeClock",
    "FakeDiscord",
    "Fault",
    "GuildRecord",
    "IdentifyRecord",
    "Intent",
    "InteractionCallback",
    "InteractionRecord",
    "InteractionType",
    "MemberRecord",
    "MessageRecord",
    "MultipartPart",
    "Permission",
    "PermissionOverwrite",
    "RecordedCall",
    "RoleRecord",
    "UserRecord",
    "Violation",
    "snowflake_time",
]
