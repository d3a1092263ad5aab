"""The few libarchive calls layer apply makes, bound with ctypes to the system ``libarchive.so.13``.

Bound here rather than through the ``libarchive-c`` package: its wrappers add
a Python error check to every call, and apply makes about eight calls per
member. Return codes are checked by the caller instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import POINTER, c_char_p, c_int, c_longlong, c_size_t, c_ssize_t, c_uint, c_void_p
from typing import Any, cast

from drivebay.errors import ArchiveIOError

try:
    _lib = ctypes.CDLL("libarchive.so.13")
except OSError as exc:
    raise ArchiveIOError(
        f"cannot load libarchive ({exc}); install the libarchive13 package (apt-get install libarchive13)"
    ) from exc

OK = 0
EOF = 1
WARN = -20
FATAL = -30

AE_IFREG = 0o100000
AE_IFDIR = 0o040000

EXTRACT_OWNER = 0x0001
EXTRACT_PERM = 0x0002
EXTRACT_TIME = 0x0004
EXTRACT_XATTR = 0x0080
EXTRACT_SECURE_NODOTDOT = 0x0200
EXTRACT_NO_AUTODIR = 0x0400
EXTRACT_SECURE_NOABSOLUTEPATHS = 0x10000

READ_CALLBACK = ctypes.CFUNCTYPE(c_ssize_t, c_void_p, c_void_p, POINTER(c_void_p))


def _bind(name: str, argtypes: list[type[Any]], restype: type[Any] | None) -> Callable[..., Any]:
    function = getattr(_lib, "archive_" + name)
    function.argtypes = argtypes
    function.restype = restype
    return cast(Callable[..., Any], function)


read_new = _bind("read_new", [], c_void_p)
read_support_format_tar = _bind("read_support_format_tar", [c_void_p], c_int)
read_open = _bind("read_open", [c_void_p, c_void_p, c_void_p, READ_CALLBACK, c_void_p], c_int)
read_next_header = _bind("read_next_header", [c_void_p, POINTER(c_void_p)], c_int)
read_extract2 = _bind("read_extract2", [c_void_p, c_void_p, c_void_p], c_int)
read_free = _bind("read_free", [c_void_p], c_int)
write_disk_new = _bind("write_disk_new", [], c_void_p)
write_disk_set_options = _bind("write_disk_set_options", [c_void_p, c_int], c_int)
write_close = _bind("write_close", [c_void_p], c_int)
write_free = _bind("write_free", [c_void_p], c_int)
error_string = _bind("error_string", [c_void_p], c_char_p)
errno = _bind("errno", [c_void_p], c_int)

entry_pathname = _bind("entry_pathname", [c_void_p], c_char_p)
entry_hardlink = _bind("entry_hardlink", [c_void_p], c_char_p)
entry_filetype = _bind("entry_filetype", [c_void_p], c_uint)
entry_size = _bind("entry_size", [c_void_p], c_longlong)
entry_set_size = _bind("entry_set_size", [c_void_p, c_longlong], None)
entry_perm = _bind("entry_perm", [c_void_p], c_uint)
entry_uid = _bind("entry_uid", [c_void_p], c_longlong)
entry_gid = _bind("entry_gid", [c_void_p], c_longlong)
entry_mtime = _bind("entry_mtime", [c_void_p], c_longlong)
entry_mtime_nsec = _bind("entry_mtime_nsec", [c_void_p], ctypes.c_long)
entry_xattr_count = _bind("entry_xattr_count", [c_void_p], c_int)
entry_xattr_reset = _bind("entry_xattr_reset", [c_void_p], c_int)
entry_xattr_next = _bind("entry_xattr_next", [c_void_p, POINTER(c_char_p), POINTER(c_void_p), POINTER(c_size_t)], c_int)
entry_xattr_clear = _bind("entry_xattr_clear", [c_void_p], None)
entry_xattr_add_entry = _bind("entry_xattr_add_entry", [c_void_p, c_char_p, c_void_p, c_size_t], None)
