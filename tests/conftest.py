"""Fixtures shared by suites in more than one folder."""

from __future__ import annotations

import pytest

from lua_runtime import sandbox


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the host chunks the sandbox hands to VMs from now on, in order: what a VM
    compiles on first use (``@warden/discord``, the Luau groups, ``task``...)."""
    names: list[str] = []
    compile_chunk = sandbox._bytecode

    def spy(name: str) -> bytes:
        names.append(name)
        return compile_chunk(name)

    monkeypatch.setattr(sandbox, "_bytecode", spy)
    return names
