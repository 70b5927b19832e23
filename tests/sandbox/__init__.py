"""Attacks on the Lua sandbox: hostile scripts that try to escape, stall or crash a guild VM."""
