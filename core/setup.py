"""The compiled parts of drivebay: the layer tar codecs and the btrfs tree search.

Everything else is declared in pyproject.toml; setuptools reads ``ext_modules``
only from here. All three modules are plain CPython C API with no library beyond
libc, so building needs only a C compiler and the Python headers.
"""

from setuptools import Extension, setup

# Hidden by default: only PyInit_* (which Python marks visible) leaves a module's shared object.
_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-fvisibility=hidden"]
# The growable buffers both tar codecs use; listed so that editing it rebuilds them and sdists carry it.
_ARCHIVE_HEADERS = ["src/drivebay/archive/growbuf.h"]

setup(
    ext_modules=[
        Extension(
            "drivebay.archive._tarapply",
            [
                "src/drivebay/archive/_tarapply.c",
                "src/drivebay/archive/tarapply_read.c",
                "src/drivebay/archive/tarapply_rebuild.c",
                "src/drivebay/archive/tarapply_split.c",
                "src/drivebay/archive/tarapply_strings.c",
                "src/drivebay/archive/tarapply_tree.c",
            ],
            depends=[*_ARCHIVE_HEADERS, "src/drivebay/archive/tarapply.h"],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "drivebay.archive._tarwrite",
            ["src/drivebay/archive/_tarwrite.c"],
            depends=_ARCHIVE_HEADERS,
            extra_compile_args=_FLAGS,
        ),
        Extension("drivebay.fs._btrfssearch", ["src/drivebay/fs/_btrfssearch.c"], extra_compile_args=_FLAGS),
    ],
)
