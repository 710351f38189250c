"""Routing rules (派单规则): the unit catalogue, areas, explicit rules and the rule engine.

`load_default()` loads the rules directory named by the `HOTLINE_RULES_DIR` setting, or the
bundled Jinshan one (`routing_rules/jinshan`).
"""

from __future__ import annotations

import os
from pathlib import Path

from routing_rules.config import RoutingConfig, RuleFileError, load_rules

__all__ = ["RoutingConfig", "RuleFileError", "default_rules_dir", "load_default", "load_rules"]

#: The bundled Jinshan district rules (金山区).
JINSHAN_DIR = Path(__file__).resolve().parent / "jinshan"

RULES_DIR_ENV = "HOTLINE_RULES_DIR"


def default_rules_dir() -> Path:
    """`HOTLINE_RULES_DIR` when set (the settings object reads the same variable), else the
    bundled Jinshan folder."""
    override = os.environ.get(RULES_DIR_ENV)
    return Path(override) if override else JINSHAN_DIR


def load_default() -> RoutingConfig:
    return load_rules(default_rules_dir())
