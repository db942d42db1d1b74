"""What changed in the store, for the page's live stream: one poller per worker, many listeners.

    watch   pure: compare two snapshots of cabinets or commands, keep a high-water mark of episodes
    feed    ``LiveFeed``: polls the store about once a second while someone listens, fans out

The changes are read from the store, never from this worker's memory of what it did itself, so with
several workers behind one database every listener hears of every change, whichever worker made it.
"""
