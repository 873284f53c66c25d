"""The contract of the catalogue table `videoai index` writes (videoai.understand) and `recommend train
--catalogue` reads (videoai.recommend): the schema-metadata key, the tool name and the format version."""

from __future__ import annotations

import json

METADATA_KEY = b"videoai.index"
TOOL = "videoai index"
FORMAT_VERSION = 1


def catalogue_metadata(schema) -> dict | None:
    """The table's videoai index metadata (a dict naming tool, format_version, model, ...), or None when the
    pyarrow schema carries none: a Parquet file made by another tool."""
    raw = (schema.metadata or {}).get(METADATA_KEY) if schema is not None else None
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("tool") == TOOL else None
