"""``portclass archive``: label a whole capture archive into a Parquet dataset, in one process or on Dask.

``inputs`` finds the captures and their timelines (ring buffers), ``task`` labels one file into parts,
``driver`` plans, runs and joins the flows that cross files, ``state`` keeps the dataset's manifest,
``cluster`` runs the tasks on Dask.
"""

from .driver import Outcome, run

__all__ = ["Outcome", "run"]
