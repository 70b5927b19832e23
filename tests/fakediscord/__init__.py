"""A local Discord stand-in that the real discord.py client talks to in end-to-end tests.

See :class:`FakeDiscord` for the API and ``fixtures.py`` for the pytest fixtures.
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
