"""The results store: experiment results and the job queue, in one database.

    store = open_store()                  # $TLAB_STORE_URL or $TLAB_HOME/tlab.db
    store.save_result(result); store.list_results(); store.results_frame()
"""

from engine.errors import StoreError
from engine.store.base import FINISHED_STATUSES, JOB_STATUSES, Store
from engine.store.entities import Measurement, Result
from engine.store.records import UnreadableResult

__all__ = ["FINISHED_STATUSES", "JOB_STATUSES", "Measurement", "Result", "Store", "StoreError", "UnreadableResult",
           "open_store"]


def open_store(url: str | None = None) -> Store:
    """Open (creating and migrating if needed) the store at `url`, default `default_store_url()`.

    Every SQLAlchemy URL is served by SqlStore; another backend would be chosen here by URL scheme.
    """
    from engine.paths import default_store_url
    from engine.store.sql_store import SqlStore

    return SqlStore(url or default_store_url())
