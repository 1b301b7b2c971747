"""The command line: the Typer app, shared options, terminal output and one module per command.

The only layer that imports typer or rich, and the only place where errors become exit codes.
"""
