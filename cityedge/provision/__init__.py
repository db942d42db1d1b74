"""``cityedge provision``: from an inventory of cabinets and a template, each cabinet's agent config,
its entry in central's registry, and its broker credentials, written where a technician copies them.

    inventory   the CSV (or the flags) read into ``CabinetSpec``s, each error with its line
    devices     the devices column: ``lc1=modbus-tcp://10.0.0.5:502/profile?unit=1`` -> a device table
    toml_out    a TOML writer for what tomllib reads (the standard library has none)
    template    the agent config of one cabinet, from the template; its files (TLS copies)
    central     the registry API of central, over HTTP with a provisioning (installer) token
    plan        what would change for one cabinet: file diffs, registry fields, credentials
    apply       doing it: files written only when they differ, then the registry, then credentials
    report      the progress bar and the table of what was done (rich)
    command     the typer command, a thin layer over the above

Re-running changes nothing already right: a file is rewritten only when its bytes differ, the
registry answers "unchanged", and a password is asked for only when there is none on both sides.
"""
