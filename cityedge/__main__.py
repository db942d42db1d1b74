"""``cityedge``: ``agent run`` goes straight to the agent (and ``--version`` is answered here), every
other command through the typer CLI."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        from protocols.release import VERSION

        print(f"cityedge {VERSION}")
        return
    if args[:2] == ["agent", "run"]:
        from cityedge.running import agent_run_options, run_agent

        options = agent_run_options(args[2:])
        if options is not None:
            run_agent(options[0], verbose=options[1])
            return
    from cityedge.cli import app

    app(prog_name="cityedge")


if __name__ == "__main__":
    main()
