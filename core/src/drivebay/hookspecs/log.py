"""Log driver hooks. (Placeholder constants; the log driver issue writes the hooks.)"""

GROUP = "drivebay.logdrivers"
PREFIX = "log_"
REQUIRED_HOOKS: tuple[str, ...] = ()
PROBE_HOOK = "log_probe"
