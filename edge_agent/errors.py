"""Exception tree of the edge agent.

AgentError
├── ConfigError     the cabinet config is wrong: names the file, the key and what was expected
└── BufferError     the SQLite buffer cannot be opened or written (disk full, corrupt file)
"""

from __future__ import annotations


class AgentError(Exception):
    pass


class ConfigError(AgentError):
    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class BufferError(AgentError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"buffer {path}: {problem}")
        self.path = path
        self.problem = problem
