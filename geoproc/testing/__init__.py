"""Helpers for tests, demos, notebooks and benchmarks: a synthetic archive with known truth."""

from .archive import BANDS, CLOUD_STATES, LAND_CLASSES, OFFSET, SCALE, Archive, generate_archive

__all__ = ["generate_archive", "Archive", "BANDS", "CLOUD_STATES", "LAND_CLASSES", "SCALE", "OFFSET"]
