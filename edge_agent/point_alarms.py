"""The alarms a driver declares on its points (``protocols.driver.AlarmRule``), evaluated by value.

A rule raises while its condition holds: ``when_true`` (a bool point is true), ``when_in`` (the value
is one of these: a controller's mode ``flashing``), ``above``/``below`` (a number beyond the limit,
cleared only ``hysteresis_pct`` back inside it). Pure: ``edge_agent.alarms`` counts the streaks.
"""

from __future__ import annotations

from protocols.driver import AlarmRule, Value


def rule_holds(rule: AlarmRule, value: Value, active: bool) -> bool | None:
    """True: in alarm, False: not, None: this value cannot tell (missing, or of the wrong kind)."""
    if value is None:
        return None
    if rule.when_true:
        return value if isinstance(value, bool) else None
    if rule.when_in:
        return None if isinstance(value, bool) else value in rule.when_in
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    h = rule.hysteresis_pct / 100
    if rule.above is not None:
        return value > (rule.above - abs(rule.above) * h if active else rule.above)
    if rule.below is not None:
        return value < (rule.below + abs(rule.below) * h if active else rule.below)
    return None
