"""Write a small, deterministic root filesystem tar for the main job (no downloads needed)."""

from __future__ import annotations

import io
import sys
import tarfile

FILES = {
    "etc/os-release": b'NAME="drivebay demo"\nID=drivebay-demo\n',
    "etc/motd": b"Welcome to the drivebay demo image\n",
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    "etc/group": b"root:x:0:\nuser:x:1000:\n",
    "bin/hello": b"#!/bin/sh\necho hello from drivebay\n",
    "usr/share/doc/demo/README": b"A generated rootfs: nothing here was downloaded.\n",
    "usr/share/doc/demo/copyright": b"Apache-2.0\n",
}
DIRS = {"bin": 0o755, "etc": 0o755, "home": 0o755, "home/user": 0o755, "root": 0o700, "tmp": 0o1777,
        "usr": 0o755, "usr/share": 0o755, "usr/share/doc": 0o755, "usr/share/doc/demo": 0o755}
MTIME = 1795429638


def main(path: str) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
        for name, mode in DIRS.items():
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, MTIME
            if name == "home/user":
                info.uid = info.gid = 1000
            entries.append((name, info, None))
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            entries.append((name, info, data))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, "hello", 0o777, MTIME
        entries.append(("bin/sh", link, None))
        for _, info, data in sorted(entries, key=lambda e: e[0]):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


if __name__ == "__main__":
    main(sys.argv[1])
