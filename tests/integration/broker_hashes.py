"""Whether a password is the one a stored Mosquitto hash (the registry's broker_hash) was made of."""

from __future__ import annotations

import base64
import hashlib
import json


def password_matches(password: str, stored: str) -> bool:
    fields = json.loads(stored)
    salt = base64.b64decode(fields["salt"])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, fields["iterations"], dklen=64)
    return base64.b64encode(digest).decode() == fields["password"]
