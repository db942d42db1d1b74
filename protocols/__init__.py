"""Wire protocols: the fleet contract between edge and central, and one package per field protocol.

Nothing here imports ``edge_agent`` or ``central``; both import from here.
"""
