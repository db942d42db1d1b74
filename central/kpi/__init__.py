"""The performance contract's figures, as plain typed functions fed with rows. Pure: no I/O, no clock.

    period        the report's period: instants snapped to the 15-minute grid, cut into local days
    energy        kWh per cabinet and day from the counters' 15-minute rollups, and two baselines
    availability  the share of the period each device was reading good, per equipment class
    delays        median and 90th percentile of raised -> acknowledged and raised -> cleared
    traffic       hours a traffic-light controller spent in each state, per day
    report        the figures summed per town and in total, and their flat CSV tables
    opendata      the open datasets' rows and features, and their DCAT catalogue

The HTTP layer (``central.api.kpi``, ``central.api.opendata``) reads the store and maps the results.
"""
