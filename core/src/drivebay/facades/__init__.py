"""Typed facades: the API callers use for each driver kind (never ``pm.hook``)."""
