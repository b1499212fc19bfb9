"""Numba kernels: plain ndarrays in, ndarrays out. They import numpy and numba only.

Kernels work on flattened or time-first arrays so that the callers (the dask
layer in the algorithm modules) can hand them one chunk at a time.
"""
