"""The Docker plugin tests' fixtures, defined in :mod:`plugin_fixtures` so tests can import its helpers too."""

from plugin_fixtures import bridge_plugin_in_netns, busybox_tar, docker_engine, netns, serve_plugin, wait_for

__all__ = ["bridge_plugin_in_netns", "busybox_tar", "docker_engine", "netns", "serve_plugin", "wait_for"]
