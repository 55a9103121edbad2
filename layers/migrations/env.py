"""Alembic environment: URL from the config the project passes (layers.db.alembic_config)."""

from alembic import context
from sqlalchemy import create_engine, pool

from layers.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # PostGIS / pgRouting / tiger tables are not ours.
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
