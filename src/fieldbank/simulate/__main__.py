"""`python -m fieldbank.simulate ...`: the simulate verb on its own (used by the benchmark)."""

import typer

from fieldbank.simulate.commands import simulate_command

if __name__ == "__main__":
    typer.run(simulate_command)
