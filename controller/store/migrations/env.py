"""Alembic environment: run on the connection the controller hands over (see controller/store/db.py)."""

from alembic import context

from obstop.controller.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
