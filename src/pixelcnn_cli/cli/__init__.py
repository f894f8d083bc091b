"""The thin Typer layer: parse, validate, call the library, print."""
