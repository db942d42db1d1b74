"""Central's HTTP layer: ``create_app`` (central.api.app) and one router per area."""

from central.api.app import create_app
from central.api.params import API_PREFIX

__all__ = ["API_PREFIX", "create_app"]
