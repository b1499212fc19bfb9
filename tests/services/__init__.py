"""Throw-away services that tests run against (started once per test session).

``pgstac``: a real STAC API, stac-fastapi-pgstac on a private PostgreSQL/PostGIS cluster.
"""
