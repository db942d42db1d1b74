"""``cityedge diag``: what a field crew at the cabinet needs to know, offline, in one run.

Every configured device read once (``edge_agent.probe``, as ``agent check --probe``), the serial
lines, the broker (TCP, TLS, MQTT; the cabinet's login only while the agent is stopped:
``broker_check``), the buffer (read without getting in the agent's way: ``buffer_state``), the clock,
the systemd service, the alarms the agent holds raised and the recent ones still in the buffer. All
at once, each bounded (``run.diagnose``); ``render`` prints it for people (rich) or scripts (JSON).
Nothing here writes anything, and it works with the agent running or stopped.
"""
