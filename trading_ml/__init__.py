"""trading-ml: the training pipeline's library (stages, models, registry, serving); the DAG and the
CLI are thin drivers over it."""

import os

# Arrow's C++ default allocator is chosen once, when pyarrow loads (pandas loads it): glibc's, not
# mimalloc. Arrow's own code (parquet, IPC, compute) allocates from it whatever pyarrow.set_memory_pool
# says, and mimalloc kept the pages worker threads had freed: 60 MB after the features stage at 500
# symbols, in the CLI's process and each training worker. Set before pyarrow loads wherever trading_ml
# is imported first (the CLI, the DAG's tasks, the API); worker processes inherit it.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
