from cityedge.cli import app

app(prog_name="cityedge")
