"""Tests of the Luau layer: translation to Lua 5.4 and Luau's standard library."""
