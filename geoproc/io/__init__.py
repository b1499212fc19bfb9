"""Input and output: STAC search, metadata parsing, raster reads, Zarr writes. No algorithms here."""
