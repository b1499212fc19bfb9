"""Moved to :mod:`geoproc.run.cluster` (where connecting to any kind of cluster lives); kept for older imports."""

from __future__ import annotations

from .run.cluster import ClusterSpec, connect

__all__ = ["connect", "ClusterSpec"]
