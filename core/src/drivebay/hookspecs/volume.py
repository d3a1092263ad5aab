"""Volume driver hooks. (Placeholder constants; the volume driver issue writes the hooks.)"""

GROUP = "drivebay.volumedrivers"
PREFIX = "volume_"
REQUIRED_HOOKS: tuple[str, ...] = ()
PROBE_HOOK = "volume_probe"
