"""Filesystem helpers shared by every driver: mounts, backing-fs facts, loop-mounted images."""
