"""Subcommands beyond Lightning's fit / validate / test / predict, one module each.

A command module parses nothing itself: its function's typed signature is the subcommand's
interface (jsonargparse builds the parser), its body checks the options, calls the library and
prints. Commands never import one another; `first_pl.runner.COMMANDS` registers them
by import path.
"""
