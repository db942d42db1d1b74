"""Remote configuration with rollback: a config sent by central as a ``set_config`` command is checked,
put in place and tried; the agent returns to its previous config by itself when the new one does not
reach the broker in time or crashes it at start (``changer`` says how, ``start`` what a start does)."""

from edge_agent.remote_config.changer import ApplyFailed, ConfigRefused, RemoteConfig, RestartRequested
from edge_agent.remote_config.start import StartState, begin_start

__all__ = ["ApplyFailed", "ConfigRefused", "RemoteConfig", "RestartRequested", "StartState", "begin_start"]
