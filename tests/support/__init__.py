"""Helpers the tests run as child processes or import; not tests themselves."""
