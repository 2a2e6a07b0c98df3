"""Persistence: the SQL schema, migrations, and every query gengate runs.

Nothing outside this package writes SQL. Queries whose text differs by dialect
(the claim, lease and fencing statements) live together in `store.queue`.
"""
