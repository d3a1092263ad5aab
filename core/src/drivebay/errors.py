"""The one exception hierarchy of drivebay.

Every class is named for what went wrong. Messages name the object (layer ID,
driver, file, key) and say what to do. The CLI prints ``str(error)`` as one
line on stderr and exits with ``exit_code``.
"""

from __future__ import annotations


class DrivebayError(Exception):
    """Base of every error drivebay raises on purpose."""

    exit_code = 1


class UsageError(DrivebayError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = 2


class InvalidConfig(DrivebayError):
    """A config file, key or value is wrong."""


class DriverNotFound(DrivebayError):
    """No installed driver of that kind has that name."""


class DriverNotSupported(DrivebayError):
    """The driver is installed but this host lacks what it needs.

    ``reason`` is the missing thing in a few words (``no aufs module``,
    ``backing fs is ext4, not btrfs``).
    """

    def __init__(self, driver: str, reason: str, fix: str = "") -> None:
        self.driver = driver
        self.reason = reason
        message = f"driver '{driver}' is not supported on this host: {reason}"
        super().__init__(f"{message}; {fix}" if fix else message)


class DriverContractError(DrivebayError):
    """A driver misses a required hook or implements one with a wrong signature."""


class DriverRootMismatch(DrivebayError):
    """The root already holds another driver's data."""


class LayerNotFound(DrivebayError):
    """No layer with that ID exists in the driver."""


class LayerExists(DrivebayError):
    """A layer with that ID already exists."""


class LayerInUse(DrivebayError):
    """The layer is mounted, or other layers or containers depend on it."""


class LayerHasChildren(LayerInUse):
    """The layer is the parent of other layers."""


class DepthLimitExceeded(DrivebayError):
    """A layer chain is deeper than the driver can mount."""


class UnsafeArchive(DrivebayError):
    """A tar entry would write outside the layer root, or is malformed."""


class InvalidArchive(DrivebayError):
    """A tar stream or image archive cannot be read."""


class ArchiveIOError(DrivebayError):
    """Reading a tree into a layer tar, or writing a layer tar's members to disk, failed."""


class DigestMismatch(InvalidArchive):
    """Content does not hash to the digest that names it."""


class QuotaNotSupported(DrivebayError):
    """A size limit was asked for where the backing filesystem cannot enforce one."""


class ImageNotFound(DrivebayError):
    """No image has that reference or ID."""


class ImageInUse(DrivebayError):
    """A container still uses the image."""


class ContainerNotFound(DrivebayError):
    """No container has that name or ID."""


class ContainerExists(DrivebayError):
    """A container with that name already exists."""


class VolumeNotFound(DrivebayError):
    """No volume has that name."""


class VolumeExists(DrivebayError):
    """A volume with that name already exists."""


class VolumeInUse(DrivebayError):
    """The volume is mounted by at least one caller."""


class VolumeNotMounted(DrivebayError):
    """An unmount names a caller that does not use the volume."""


class NetworkNotFound(DrivebayError):
    """No network has that name or ID."""


class NetworkExists(DrivebayError):
    """A network with that name, bridge or subnet already exists."""


class NetworkInUse(DrivebayError):
    """Endpoints are still connected to the network."""


class AddressUnavailable(DrivebayError):
    """The requested address is taken, or the pool is exhausted."""


class LogNotFound(DrivebayError):
    """No log exists for that container."""


class LogInUse(DrivebayError):
    """Another process is writing that container's log."""


class MountError(DrivebayError):
    """A mount or unmount system call failed."""


class BtrfsError(DrivebayError):
    """A btrfs subvolume, snapshot or qgroup operation failed."""


class PluginError(DrivebayError):
    """A Docker plugin cannot be found or activated, or a call to it failed."""


class SnapshotNotFound(DrivebayError):
    """No containerd snapshot has that key."""


class SnapshotExists(DrivebayError):
    """A containerd snapshot with that key or name already exists."""


class SnapshotStateError(DrivebayError):
    """The snapshot is of the wrong kind for the call (not active, not committed) or still has children."""


class InvalidSnapshotRequest(DrivebayError):
    """A snapshotter call names a field or filter that cannot be used that way."""
