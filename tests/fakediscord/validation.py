"""The request validation Discord applies and the bot relies on.

Each check adds field errors to a :class:`~.errors.FormErrors` (answered as one 400 "Invalid Form
Body") or raises a specific 400. Limits are Discord's documented ones.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .errors import FormErrors

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_ALLOWED_MENTION_IDS = 100
ALLOWED_MENTION_TYPES = ("everyone", "roles", "users")
MAX_CUSTOM_ID = 100
MAX_AUTOCOMPLETE_CHOICES = 25
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_TEXT_INPUT = 4000
MAX_BULK_DELETE = 100
MAX_TIMEOUT_DAYS = 28
MAX_BAN_DELETE_SECONDS = 7 * 24 * 3600


def _too_long(form: FormErrors, path: tuple[str | int, ...], limit: int) -> None:
    form.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _required(form: FormErrors, path: tuple[str | int, ...]) -> None:
    form.add(path, "BASE_TYPE_REQUIRED", "This field is required")


def check_embeds(embeds: Any, form: FormErrors, path: tuple[str | int, ...] = ("embeds",)) -> None:
    """Count and size limits of a message's embeds, including the 6000-character total."""
    if not isinstance(embeds, list):
        form.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(embeds) > MAX_EMBEDS:
        _too_long(form, path, MAX_EMBEDS)
    total = 0
    for index, embed in enumerate(embeds):
        where = (*path, index)
        if not isinstance(embed, dict):
            form.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        for key, limit in EMBED_TEXT_LIMITS.items():
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                _too_long(form, (*where, key), limit)
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            _too_long(form, (*where, "fields"), MAX_EMBED_FIELDS)
        for field_index, item in enumerate(fields):
            for key, limit in (("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)):
                text = item.get(key)
                if not text:
                    _required(form, (*where, "fields", field_index, key))
                    continue
                total += len(text)
                if len(text) > limit:
                    _too_long(form, (*where, "fields", field_index, key), limit)
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        total += len(footer) + len(author)
        if len(footer) > MAX_FOOTER_TEXT:
            _too_long(form, (*where, "footer", "text"), MAX_FOOTER_TEXT)
        if len(author) > MAX_AUTHOR_NAME:
            _too_long(form, (*where, "author", "name"), MAX_AUTHOR_NAME)
    if total > MAX_EMBED_TOTAL:
        form.add(path, "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")


def check_allowed_mentions(allowed: Any, form: FormErrors) -> None:
    """``parse`` items among users/roles/everyone, and never ``parse`` a kind that is also listed."""
    path: tuple[str | int, ...] = ("allowed_mentions",)
    if not isinstance(allowed, dict):
        form.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    parse = allowed.get("parse", [])
    if not isinstance(parse, list):
        form.add((*path, "parse"), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        parse = []
    for index, item in enumerate(parse):
        if item not in ALLOWED_MENTION_TYPES:
            form.add(
                (*path, "parse", index),
                "BASE_TYPE_CHOICES",
                "Value must be one of {'everyone', 'roles', 'users'}.",
            )
    for kind in ("users", "roles"):
        ids = allowed.get(kind)
        if ids is None:
            continue
        if not isinstance(ids, list):
            form.add((*path, kind), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            continue
        if len(ids) > MAX_ALLOWED_MENTION_IDS:
            _too_long(form, (*path, kind), MAX_ALLOWED_MENTION_IDS)
        for index, value in enumerate(ids):
            if not str(value).isdigit():
                form.add((*path, kind, index), "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        if ids and kind in parse:
            form.add(
                path,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.',
            )


def check_components(components: Any, form: FormErrors) -> None:
    """Custom ids present on interactive components are at most 100 characters and unique."""
    seen: set[str] = set()

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, (*path, index))
        elif isinstance(node, dict):
            custom_id = node.get("custom_id")
            if isinstance(custom_id, str):
                if len(custom_id) > MAX_CUSTOM_ID:
                    _too_long(form, (*path, "custom_id"), MAX_CUSTOM_ID)
                if custom_id in seen:
                    form.add(
                        (*path, "custom_id"),
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated",
                    )
                seen.add(custom_id)
            for key in ("components", "component", "accessory"):
                if key in node:
                    walk(node[key], (*path, key))

    walk(components, ("components",))


def check_message(payload: dict[str, Any], form: FormErrors) -> None:
    """The field checks of a message body (create, edit, interaction response, webhook followup)."""
    content = payload.get("content")
    if content is not None:
        if not isinstance(content, str):
            form.add(("content",), "BASE_TYPE_STRING", "Must be a string.")
        elif len(content) > MAX_CONTENT:
            _too_long(form, ("content",), MAX_CONTENT)
    if payload.get("embeds") is not None:
        check_embeds(payload["embeds"], form)
    if payload.get("allowed_mentions") is not None:
        check_allowed_mentions(payload["allowed_mentions"], form)
    if payload.get("components") is not None:
        check_components(payload["components"], form)
    for index, attachment in enumerate(payload.get("attachments") or []):
        if not isinstance(attachment, dict) or not str(attachment.get("id", "")).isdigit():
            _required(form, ("attachments", index, "id"))


def check_not_empty(
    *, content: str | None, embeds: list[Any], attachments: int, components: list[Any], payload: dict
) -> None:
    """Discord refuses a message with nothing in it (code 50006)."""
    if content or embeds or attachments or components or payload.get("sticker_ids") or payload.get("poll"):
        return
    raise errors.bad_request(50006, "Cannot send an empty message")


def check_modal(data: Any, form: FormErrors) -> None:
    """A modal (interaction response type 9): title, custom id, 1 to 5 top-level components."""
    if not isinstance(data, dict):
        _required(form, ("data",))
        return
    title = data.get("title")
    if not title:
        _required(form, ("data", "title"))
    elif len(title) > MAX_MODAL_TITLE:
        _too_long(form, ("data", "title"), MAX_MODAL_TITLE)
    custom_id = data.get("custom_id")
    if not custom_id:
        _required(form, ("data", "custom_id"))
    elif len(custom_id) > MAX_CUSTOM_ID:
        _too_long(form, ("data", "custom_id"), MAX_CUSTOM_ID)
    components = data.get("components") or []
    if not components:
        _required(form, ("data", "components"))
    elif len(components) > MAX_MODAL_COMPONENTS:
        _too_long(form, ("data", "components"), MAX_MODAL_COMPONENTS)
    for index, text_input in enumerate(text_inputs(components)):
        where = ("data", "components", index)
        for key in ("min_length", "max_length"):
            value = text_input.get(key)
            if value is not None and not 0 <= value <= MAX_TEXT_INPUT:
                form.add(
                    (*where, key),
                    "NUMBER_TYPE_MAX",
                    f"int value should be less than or equal to {MAX_TEXT_INPUT}.",
                )
        if len(text_input.get("value") or "") > MAX_TEXT_INPUT:
            _too_long(form, (*where, "value"), MAX_TEXT_INPUT)


def text_inputs(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text inputs (type 4) of a modal, whether in action rows (type 1) or labels (type 18)."""
    found = []
    for component in components:
        if component.get("type") == 1:
            found.extend(text_inputs(component.get("components") or []))
        elif component.get("type") == 18:
            found.extend(text_inputs([component.get("component") or {}]))
        elif component.get("type") == 4:
            found.append(component)
    return found


def check_autocomplete(data: Any, form: FormErrors) -> None:
    """An autocomplete result (type 8): at most 25 choices, each with a name and a value."""
    choices = (data or {}).get("choices")
    if choices is None:
        _required(form, ("data", "choices"))
        return
    if len(choices) > MAX_AUTOCOMPLETE_CHOICES:
        _too_long(form, ("data", "choices"), MAX_AUTOCOMPLETE_CHOICES)
    for index, choice in enumerate(choices):
        for key in ("name", "value"):
            if choice.get(key) in (None, ""):
                _required(form, ("data", "choices", index, key))
        if len(str(choice.get("name", ""))) > 100:
            _too_long(form, ("data", "choices", index, "name"), 100)
