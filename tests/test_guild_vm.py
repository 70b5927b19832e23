"""The guild VM: loading scripts, running handlers, collecting actions, output and errors."""

import datetime

import pytest

from lua_runtime.events import EVENT_NAMES, sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import KiB, MiB, SandboxLimits

LIMITS = SandboxLimits()
MESSAGE = sample_payload("message")


def vm_of(*scripts: tuple[str, str], limits: SandboxLimits = LIMITS) -> GuildVM:
    return GuildVM(42, [ScriptSource(name, source) for name, source in scripts], limits)


def test_handlers_run_in_load_order_and_actions_name_their_script():
    vm = vm_of(
        (
            "first",
            'local d = require("@warden/discord") return { message = function(m) d.send(m.channel_id, "1") end }',
        ),
        (
            "second",
            'local d = require("@warden/discord") return { message = function(m) d.reply(m, "2") end }',
        ),
    )
    result = vm.dispatch("message", sample_payload("message"))
    assert result.ok and result.scripts == ["first", "second"]
    assert result.actions == [
        {"channel_id": MESSAGE["channel_id"], "content": "1", "script": "first", "type": "send"},
        {
            "channel_id": MESSAGE["channel_id"],
            "content": "2",
            "message_id": MESSAGE["id"],
            "script": "second",
            "type": "reply",
        },
    ]


def test_each_script_has_its_own_globals():
    vm = vm_of(
        ("writer", "shared = 'mine' return { message = function() shared = 'changed' print(shared) end }"),
        ("reader", "return { message = function() print(tostring(shared)) end }"),
    )
    result = vm.dispatch("message", sample_payload("message"))
    assert [(line.script, line.text) for line in result.output] == [("writer", "changed"), ("reader", "nil")]


def test_an_error_stops_only_its_own_script_and_reports_the_authors_line():
    vm = vm_of(
        ("broken", "return {\n  message = function(m)\n    local t = nil\n    return t.field\n  end,\n}"),
        ("fine", "return { message = function() print('still here') end }"),
    )
    result = vm.dispatch("message", sample_payload("message"))
    [error] = result.errors
    assert (error.script, error.kind, error.line) == ("broken", "runtime", 4)
    assert "attempt to index a nil value" in error.message
    assert not error.message.startswith("broken:")
    assert [line.text for line in result.output] == ["still here"]
    # The VM keeps serving.
    assert vm.dispatch("message", sample_payload("message")).errors[0].line == 4


def test_builder_errors_point_at_the_authors_call():
    vm = vm_of(
        (
            "ids",
            'local d = require("@warden/discord")\nreturn { message = function(m)\n\n  d.kick(12345)\nend }',
        ),
    )
    [error] = vm.dispatch("message", sample_payload("message")).errors
    assert error.line == 4 and error.kind == "runtime"
    assert "user_id must be an id string such as msg.author.id, not a number" in error.message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('d.send(m.channel_id, "")', "content must not be empty"),
        ('d.send(m.channel_id, string.rep("x", 2001))', "content is 2001 characters long; the limit is 2000"),
        ('d.send(m.channel_id, "\\255\\254")', "content is not valid UTF-8 text"),
        ('d.send("general", "hi")', 'channel_id must be an id string such as msg.author.id, got "general"'),
        ("d.timeout(m.author.id, 0)", "seconds must be between 1 and 2419200, got 0"),
        ("d.timeout(m.author.id, 1.5)", "seconds must be a whole number, got 1.5"),
        ("d.ban(m.author.id, nil, 10^7)", "delete_message_seconds must be between 0 and 604800"),
        ("d.reply(nil, 'x')", "reply needs the message to answer"),
        ("d.send(m.channel_id, { embeds = { { colour = 1 } } })", 'embeds[1] has an unknown field "colour"'),
        ('d.send(m.channel_id, { content = "" })', "a message needs content or at least one embed"),
        ('d.kick(m.author.id, string.rep("r", 401))', "reason is 401 characters long; the limit is 400"),
    ],
)
def test_builders_check_their_arguments(call, message):
    vm = vm_of(("s", f'local d = require("@warden/discord") return {{ message = function(m) {call} end }}'))
    [error] = vm.dispatch("message", sample_payload("message")).errors
    assert message in error.message


def test_embeds_are_copied_field_by_field():
    source = """local d = require("@warden/discord")
return { message = function(m)
  local e = { title = "Warned", color = 16711680, fields = { { name = "User", value = "<@1>" } } }
  e.self = e  -- a cycle the action must not carry
  e.self = nil
  d.send(m.channel_id, { content = "see embed", embeds = { e } })
end }"""
    [action] = vm_of(("s", source)).dispatch("message", sample_payload("message")).actions
    assert action["embeds"] == [
        {"color": 16711680, "fields": [{"inline": False, "name": "User", "value": "<@1>"}], "title": "Warned"}
    ]


def test_actions_per_event_are_capped_across_scripts():
    send_many = 'local d = require("@warden/discord") return { message = function(m) for i = 1, %d do d.send(m.channel_id, "x") end end }'
    vm = vm_of(("a", send_many % 15), ("b", send_many % 15), limits=SandboxLimits(max_actions_per_event=20))
    result = vm.dispatch("message", sample_payload("message"))
    assert len(result.actions) == 20
    [error] = result.errors
    assert (error.script, error.kind) == ("b", "limit")
    assert error.message == "too many actions in one event (the limit is 20)"


def test_a_script_cannot_rewrite_what_the_next_one_sees():
    vm = vm_of(
        ("meddler", "return { message = function(m) m.content = 'rewritten' m.author.id = '1' end }"),
        ("reader", "return { message = function(m) print(m.content, m.author.id) end }"),
    )
    [line] = vm.dispatch("message", sample_payload("message")).output
    assert line.text == f"{MESSAGE['content']}\t{MESSAGE['author']['id']}"


def test_print_output_is_bounded_per_event():
    vm = vm_of(
        ("chatty", "return { message = function() for i = 1, 10000 do print(string.rep('y', 100)) end end }")
    )
    result = vm.dispatch("message", sample_payload("message"))
    assert result.ok
    total = sum(len(line.text.encode()) for line in result.output)
    assert total <= LIMITS.max_output_per_event + 100
    assert result.output[-1].text.endswith(
        f"(print output cut: {LIMITS.max_output_per_event} bytes per event)"
    )


def test_cpu_budget_is_shared_by_the_event_and_later_scripts_are_told():
    vm = vm_of(
        ("spinner", "return { message = function() while true do end end }"),
        ("after", "return { message = function() end }"),
    )
    result = vm.dispatch("message", sample_payload("message"))
    assert [(e.script, e.kind) for e in result.errors] == [("spinner", "time_limit"), ("after", "time_limit")]
    assert result.errors[0].message == "time limit exceeded (100 ms of CPU per event)"
    assert result.errors[1].message == "not run: the event's CPU budget was used up by script spinner"


def test_top_level_code_is_bounded_too():
    vm = vm_of(("stuck", "while true do end return {}"), ("ok", "return { message = function() end }"))
    [error] = vm.load_errors
    assert (error.script, error.kind) == ("stuck", "time_limit")
    assert vm.handled_events == frozenset({"message"})


def test_a_vm_that_stays_full_is_rebuilt_from_its_scripts():
    hoarder = "local keep = {} return { message = function() while true do keep[#keep + 1] = string.rep('x', 4096) end end }"
    vm = vm_of(("hoarder", hoarder), limits=SandboxLimits(max_memory=2 * MiB))
    [error] = vm.dispatch("message", sample_payload("message")).errors
    assert error.kind == "memory_limit" and error.message == "memory limit exceeded (2 MiB per server)"
    assert not vm.trusted
    vm.dispatch("message", sample_payload("message"))
    assert vm.rebuilds == 1


def test_memory_freed_by_the_script_keeps_the_vm():
    burst = (
        "return { message = function() local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 100) end end }"
    )
    vm = vm_of(("burst", burst), limits=SandboxLimits(max_memory=2 * MiB))
    [error] = vm.dispatch("message", sample_payload("message")).errors
    assert error.kind == "memory_limit"
    assert vm.trusted
    assert vm.dispatch("message", sample_payload("message")).errors[0].kind == "memory_limit"
    assert vm.rebuilds == 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("return 5", "a script must return a table of event handlers"),
        (
            "return { mesage = function() end }",
            'unknown event "mesage" in the returned table; events are message',
        ),
        ("return { message = 'hi' }", "the handler for message must be a function"),
        ('require("socket")', 'cannot require "socket": Warden scripts can require @warden/discord'),
    ],
)
def test_bad_script_shapes_are_explained(source, message):
    [error] = vm_of(("shape", source)).load_errors
    assert message in error.message


def test_script_size_is_limited():
    [error] = vm_of(("big", "-- " + "x" * 2048), limits=SandboxLimits(max_script_bytes=1 * KiB)).load_errors
    assert error.kind == "limit" and error.message == "the script is 2051 bytes; the limit is 1024"


def test_payloads_must_be_plain_data():
    vm = vm_of(("s", "return { message = function() end }"))
    payload = sample_payload("message")
    payload["created_at"] = datetime.datetime.now()
    with pytest.raises(ValueError, match="plain data only, got datetime"):
        vm.dispatch("message", payload)
    with pytest.raises(ValueError, match="unknown event"):
        vm.dispatch("mesage", {})


def test_events_without_handlers_cost_nothing():
    vm = vm_of(("s", "return { member_join = function() print('joined') end }"))
    for event in EVENT_NAMES:
        result = vm.dispatch(event, sample_payload(event))
        assert result.scripts == (["s"] if event == "member_join" else [])
