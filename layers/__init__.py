"""The data: layer registry, models, database connection, embedded cluster, import/export."""
