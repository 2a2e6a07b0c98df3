"""The pure core of gengate: job states, money, ids and error codes.

Nothing in this package performs I/O or imports a framework; every other layer
depends on it and it depends on nothing else in gengate.
"""
