"""cityedge: the command line and the pieces that compose the agent, the aggregator and a broker."""

from protocols.release import VERSION as __version__

__all__ = ["__version__"]
