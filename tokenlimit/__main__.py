from tokenlimit.cli.main import run

run()
