"""Finished baseline measurements on disk, so an interrupted or repeated run redoes nothing.

One JSON object per line, appended as soon as a measurement finishes; a line cut short by an
interruption is ignored on reading. The key names everything the result depends on: codec,
library versions, fixed encoder options, quality, the image's content and the record format.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtaic.evaluation.measure import RECORD_VERSION


def cache_key(codec: str, version: str, settings: str, quality: str, sha256: str) -> str:
    return f"r{RECORD_VERSION}|{codec}|{version}|{settings}|q={quality}|{sha256}"


class ResultCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path) as f:
                for line in f:
                    try:
                        item = json.loads(line)
                        self.entries[item["key"]] = item["record"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict:
        return self.entries[key]

    def put(self, key: str, record: dict) -> None:
        self.entries[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "record": record}) + "\n")
