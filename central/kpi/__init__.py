"""The performance contract's figures, as plain typed functions fed with rows. Pure: no I/O, no clock.

    period        the report's period: instants snapped to the 15-minute grid, cut into local days
    energy        kWh per cabinet and day from the counters' 15-minute rollups, and two baselines
    availability  the share of the period each device was reading good, per equipment class
    delays        median and 90th percentile of raised -> acknowledged and raised -> cleared
    report        the figures summed per town and in total, and their flat CSV tables

The HTTP layer (``central.api.kpi``, ``central.api.opendata``) reads the store and maps the results.
"""
