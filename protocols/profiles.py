"""Where profiles (a device model's point map, whatever its protocol) are found: data files named
``<name>.toml``, looked for in a search path, first match wins.

The path is the cabinet config's ``profiles_dir``, then ``/etc/cityedge/profiles`` (a technician's own
profiles, which no upgrade touches), then the profiles packaged with cityedge. Pure path logic: no
protocol is imported here, so the agent core can name the file a device's profile comes from.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocols.errors import ProfileError

PROFILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SYSTEM_PROFILE_DIR = Path("/etc/cityedge/profiles")


def default_profile_dirs() -> list[Path]:
    """The repository's ``config/profiles`` and, in an installed wheel, ``cityedge/config/profiles``."""
    candidates = [Path(__file__).resolve().parents[1] / "config" / "profiles"]
    spec = importlib.util.find_spec("cityedge")
    if spec is not None and spec.submodule_search_locations is not None:
        candidates += [Path(loc) / "config" / "profiles" for loc in spec.submodule_search_locations]
    unique = dict.fromkeys(path.resolve() for path in candidates if path.is_dir())
    return list(unique)


def profile_search_path(
    profiles_dir: Path | None = None, *, system_dir: Path = SYSTEM_PROFILE_DIR
) -> list[Path]:
    """Where profiles are looked for, first match wins: ``profiles_dir`` (the cabinet config's),
    ``system_dir`` (a technician's own profiles, untouched by upgrades), then the packaged ones."""
    first = [] if profiles_dir is None else [profiles_dir]
    return [*first, system_dir, *default_profile_dirs()]


def available_profiles(search_dirs: Sequence[Path]) -> list[str]:
    """Names of the profiles found in ``search_dirs``, sorted."""
    names = {path.stem for d in search_dirs if d.is_dir() for path in d.glob("*.toml")}
    return sorted(names)


def find_profile_file(name: str, search_dirs: Sequence[Path]) -> Path:
    """The file ``<name>.toml`` in the first of ``search_dirs`` that has it, or a ProfileError."""
    where = f"profile {name!r}"
    searched = ", ".join(str(d) for d in search_dirs) or "(no profile directories)"
    if not re.match(PROFILE_NAME_PATTERN, name):
        raise ProfileError(searched, where, "expected a profile name like 'lighting-single-circuit'")
    for directory in search_dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    available = ", ".join(available_profiles(search_dirs)) or "none"
    raise ProfileError(searched, where, f"unknown profile; available: {available}")


def read_profile_text(path: Path) -> str:
    """A profile file's text, or a ProfileError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(str(path), "(file)", f"cannot read: {exc}") from exc


def profile_table(text: str, path: str) -> dict[str, Any]:
    """A profile's TOML text as a table, or a ProfileError naming ``path`` (only used in messages)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "(file)", f"not valid TOML: {exc}") from exc
