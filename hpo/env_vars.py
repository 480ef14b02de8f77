"""Switches read from the environment, checked where they enter: a value that is not one of the switch's
values is refused in one line naming the variable, never read as "off"."""
from __future__ import annotations

import os
from typing import Mapping

from mnist.errors import UserError

ON, OFF = "1", "0"


def switch(name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the switch `name` is on: "1" on, "0" or unset (or empty) off, anything else refused."""
    value = environ.get(name, "").strip()
    if value not in ("", ON, OFF):
        raise UserError(f"{name}={environ[name]!r}: must be {ON} (on) or {OFF} (off), or unset")
    return value == ON
