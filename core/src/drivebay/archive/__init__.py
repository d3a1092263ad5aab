"""Layer tars in the OCI/Docker layer format: writing, reading, applying, diffing.

Public API (every driver and the layer store use only these names):

- :class:`WhiteoutFormat`: how deletions are stored on disk.
- :func:`check_layer_id`: refuse IDs that are not safe as file names.
- :func:`open_layer_stream`: a context manager yielding an uncompressed stream
  from plain, gzip or zstd input.
- :func:`apply_layer_tar`: extract a layer tar into a directory, safely.
- :func:`write_tree_tar`: tar a whole directory, turning on-disk whiteouts into tar ones.
- :func:`write_changes_tar`: tar a list of changes read from a directory.
- :func:`naive_changes`: compare two trees.
- :func:`tree_changes`: changes from an upper directory holding on-disk whiteouts.
- :func:`changes_size`: bytes of the added or modified regular files.
- :func:`write_tar_split` and :class:`RebuiltTar`: keep a layer tar as its headers and
  rebuild it from the layer's files.
"""

from drivebay.archive.apply import apply_layer_tar
from drivebay.archive.changes import changes_size, naive_changes, tree_changes
from drivebay.archive.compression import open_layer_stream
from drivebay.archive.names import check_layer_id
from drivebay.archive.tarsplit import RebuiltTar, Split, write_tar_split
from drivebay.archive.whiteouts import WhiteoutFormat
from drivebay.archive.writer import write_changes_tar, write_tree_tar

__all__ = [
    "RebuiltTar",
    "Split",
    "WhiteoutFormat",
    "apply_layer_tar",
    "changes_size",
    "check_layer_id",
    "naive_changes",
    "open_layer_stream",
    "tree_changes",
    "write_changes_tar",
    "write_tar_split",
    "write_tree_tar",
]
