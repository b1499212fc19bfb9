"""How work runs, never what is computed.

Connecting to a cluster and checking its workers, cutting a job into tiles and
batches, the ledger of what is done, workflow files and run reports. Modules
here wire library functions together and add no science.
"""

from .tiles import TiledRun, write_tiled

__all__ = ["write_tiled", "TiledRun"]
