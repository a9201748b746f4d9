"""Example applications built on Tessera; not part of either service."""
