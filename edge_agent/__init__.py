"""The edge agent: polls field devices, buffers every record in SQLite, syncs to central over MQTT."""
