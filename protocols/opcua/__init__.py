"""Traffic-light controllers over OPC UA: device config, node-map profiles, the driver, a simulator.

``config`` and ``profile`` import no asyncua, so that checking a cabinet's config stays light; only
``driver`` and ``simulator`` do.
"""
