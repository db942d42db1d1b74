"""`cityedge fleet-sim`: thousands of simulated cabinets in one process against a central.

Each cabinet is the real agent's buffer (``edge_agent.buffer.Buffer``, on an in-memory SQLite
database), sync (``edge_agent.sync.Sync``: births, last will, batches, acks, resends) and command
execution (``edge_agent.commands.CommandExecutor`` driving ``LightingRunner``); only the devices are
simulated: readings are generated straight into the buffer, no Modbus socket per cabinet.
"""

from cityedge.fleet_sim.cabinet import SimCabinet
from cityedge.fleet_sim.fleet import Fleet
from cityedge.fleet_sim.plan import FleetPlan, OutagePlan
from cityedge.fleet_sim.stats import FleetReport

__all__ = ["Fleet", "FleetPlan", "FleetReport", "OutagePlan", "SimCabinet"]
