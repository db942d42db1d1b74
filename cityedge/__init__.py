"""cityedge: the command line and the pieces that compose the agent, the aggregator and a broker."""

__version__ = "0.1.0"
