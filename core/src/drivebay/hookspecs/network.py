"""Network driver hooks. (Placeholder constants; the network driver issue writes the hooks.)"""

GROUP = "drivebay.netdrivers"
PREFIX = "net_"
REQUIRED_HOOKS: tuple[str, ...] = ()
PROBE_HOOK = "net_probe"
