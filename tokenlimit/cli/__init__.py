"""Typer commands: parse arguments, call the core, render the result. Nothing else."""
