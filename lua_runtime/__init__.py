"""Sandboxed Luau for Warden: guild VMs, the Luau layer and the VM distribution strategies.

This package never imports discord.py. It takes plain data in (event names and dicts) and gives
plain data back (action dicts, print output, structured errors), so it can be tested, benchmarked
and reused without a bot.
"""
