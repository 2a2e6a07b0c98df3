"""Persistence: the SQL schema, migrations, and every query gengate runs.

Nothing outside this package writes SQL. The few statements whose text differs by
dialect (upserts, GREATEST, claim locking, tag containment) come from `store.dialect`.
"""
