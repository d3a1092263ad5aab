"""Tar headers: encoding (USTAR plus PAX records) and decoding (USTAR, PAX and GNU).

Our own codec instead of :mod:`tarfile`: ``tarfile`` builds a ``TarInfo``
object, a dict of PAX fields and several intermediate strings per member,
which makes it about four times slower than GNU tar on a tree of small files.
Here a header is packed with one ``struct`` call and parsed with slices.

The layer tar writer encodes in C (``_tarwrite.c``), byte for byte as
:func:`encode_header` does; :func:`encode_header` serves hand-made tars
(``drivebay.testing.tars``) and the tests that check the writer against it.

Layer apply reads tars in C too (``_tarapply.c``), so :class:`TarReader`
serves only readers that want our :class:`Header` per member, such as the
archive tests checking exactly what the writer wrote: a second, independent
reading of the format.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from drivebay.errors import InvalidArchive

BLOCK = 512
REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_CONTIGUOUS = b"7"
_PAX = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
_MEMBER_TYPES = (REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO)

_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777
_XATTR = "SCHILY.xattr."
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_NUL_SPACE = b"\x00 "
_ZERO_BLOCK = bytes(BLOCK)


@dataclass(slots=True)
class Header:
    """One tar member. ``name`` has no ``./`` prefix; directories end in ``/``.

    ``mode`` holds only the permission bits (``0o7777``). ``mtime_ns`` is
    nanoseconds since the epoch. ``xattrs`` maps names to raw values.
    """

    name: str
    type: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


def byte_sum(block: bytes) -> int:
    """The sum of the bytes of ``block`` (at most 512 bytes), as tar checksums need it.

    ``sum(block)`` walks the bytes in Python and costs more than the rest of a
    header's parsing. adler32's low half is one plus the byte sum modulo
    65521, which is exact for 256 bytes (at most 65280): so sum two halves.
    """
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length += 1
    return b"%d" % length + body


def _pax_time(mtime_ns: int) -> bytes:
    sec, nsec = divmod(mtime_ns, 1_000_000_000)
    if sec < 0 and nsec:
        # divmod floors; PAX writes -1.5 for a time 1.5 s before the epoch.
        return b"-%d.%s" % (-(sec + 1), (b"%09d" % (1_000_000_000 - nsec)).rstrip(b"0"))
    if nsec:
        return b"%d.%s" % (sec, (b"%09d" % nsec).rstrip(b"0"))
    return b"%d" % sec


_ZERO_NAMES = bytes(100)
_USTAR_TAIL = bytes(64)  # empty uname and gname
_USTAR_END = bytes(167)  # empty prefix and the block's padding


def _ustar_block(
    name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes, linkname: bytes, dev: bytes
) -> bytes:
    """One USTAR header block. Numbers too big for their fields must already be 0 (PAX carries them)."""
    # mode, uid, gid, size and mtime are adjacent fields (offsets 100-148): one format call.
    numbers = b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00" % (mode, uid, gid, size, mtime)
    head = b"".join((name, _ZERO_NAMES[len(name) :], numbers))
    tail = b"".join((typeflag, linkname, _ZERO_NAMES[len(linkname) :], _USTAR_MAGIC, _USTAR_TAIL, dev, _USTAR_END))
    # The checksum is the byte sum with its own field read as eight spaces.
    checksum = byte_sum(head + _CHECKSUM_SPACES + tail)
    return b"".join((head, b"%06o\x00 " % checksum, tail))


_CHECKSUM_SPACES = b"        "
_USTAR_MAGIC = b"ustar\x0000"
_NO_DEVICE = b"0000000\x000000000\x00"
_PAX_NAME = b"PaxHeaders.0/@PaxHeader"
_pax_blocks: dict[int, bytes] = {}


def _pax_header_block(size: int) -> bytes:
    # Every extended header has the same fixed name and metadata, so only its size varies: cache the blocks.
    block = _pax_blocks.get(size)
    if block is None:
        block = _pax_blocks[size] = _ustar_block(_PAX_NAME, 0o644, 0, 0, size, 0, _PAX, b"", _NO_DEVICE)
    return block


def encode_header(hdr: Header) -> bytes:
    """The header block(s) of ``hdr``: a PAX extended header first when USTAR cannot hold a field."""
    name = hdr.name.encode("utf-8", "surrogateescape")
    linkname = hdr.linkname.encode("utf-8", "surrogateescape")
    sec, nsec = divmod(hdr.mtime_ns, 1_000_000_000)
    uid, gid, size = hdr.uid, hdr.gid, hdr.size
    records: list[tuple[bytes, bytes]] = []
    if nsec or not 0 <= sec <= _MAX_OCTAL_11:
        records.append((b"mtime", _pax_time(hdr.mtime_ns)))
        if not 0 <= sec <= _MAX_OCTAL_11:
            sec = 0
    if len(name) > 100:
        records.append((b"path", name))
        name = name[:100]
    if len(linkname) > 100:
        records.append((b"linkpath", linkname))
        linkname = linkname[:100]
    if uid > _MAX_OCTAL_7:
        records.append((b"uid", b"%d" % uid))
        uid = 0
    if gid > _MAX_OCTAL_7:
        records.append((b"gid", b"%d" % gid))
        gid = 0
    if size > _MAX_OCTAL_11:
        records.append((b"size", b"%d" % size))
        size = 0
    if hdr.xattrs:
        records.extend(((_XATTR + key).encode("utf-8", "surrogateescape"), value) for key, value in hdr.xattrs.items())
    if hdr.devmajor or hdr.devminor:
        if hdr.devmajor > _MAX_OCTAL_7 or hdr.devminor > _MAX_OCTAL_7:
            # No PAX key exists for big device numbers; GNU tar refuses them too.
            raise InvalidArchive(f"'{hdr.name}': device number {hdr.devmajor}:{hdr.devminor} does not fit a tar header")
        dev = b"%07o\x00%07o\x00" % (hdr.devmajor, hdr.devminor)
    else:
        dev = _NO_DEVICE
    main = _ustar_block(name, hdr.mode & 0o7777, uid, gid, size, sec, hdr.type, linkname, dev)
    if not records:
        return main
    if len(records) == 1:
        data = _pax_record(*records[0])
    else:
        records.sort()
        data = b"".join([_pax_record(k, v) for k, v in records])
    return b"".join((_pax_header_block(len(data)), data, _ZERO_BLOCK[: -len(data) % BLOCK], main))


class TarReader:
    """Reads members from an uncompressed tar stream, in big chunks.

    :meth:`next` returns the next :class:`Header` with the stream positioned at
    its data; the caller reads exactly ``header.size`` bytes with
    :meth:`read_data` or :meth:`skip_data` before asking for the next one.
    """

    CHUNK = 1 << 20

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._pending = 0
        self._pad = 0

    def _fill(self) -> bool:
        chunk = self._stream.read(self.CHUNK)
        self._buf = chunk
        self._view = memoryview(chunk)
        self._pos = 0
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        """Exactly ``n`` bytes (fewer only at the end of the stream), copied: for headers and padding."""
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n and self._fill():
            part = self._buf[: n - have]
            self._pos = len(part)
            parts.append(part)
            have += len(part)
        return b"".join(parts)

    def read_data(self, n: int) -> memoryview:
        """Up to ``n`` bytes of the current member's data, without copying; empty at its end."""
        n = min(n, self._pending)
        if not n:
            return memoryview(b"")
        if self._pos >= len(self._buf) and not self._fill():
            raise InvalidArchive("the layer tar ends in the middle of a member; the stream is truncated")
        end = min(self._pos + n, len(self._buf))
        out = self._view[self._pos : end]
        self._pending -= end - self._pos
        self._pos = end
        if not self._pending and self._pad:
            if end + self._pad <= len(self._buf):
                self._pos = end + self._pad
            elif len(self._take(self._pad)) != self._pad:
                raise InvalidArchive("the layer tar ends in the middle of a member; the stream is truncated")
            self._pad = 0
        return out

    def skip_data(self) -> None:
        """Skip what is left of the current member's data."""
        while self._pending:
            self.read_data(self._pending)

    def _start(self, size: int) -> None:
        self._pending = size
        self._pad = -size % BLOCK

    def drain(self) -> None:
        """Read the stream to its end, as moby does, so that callers hashing it see every byte."""
        while self._fill():
            pass

    @property
    def pending(self) -> int:
        """Bytes of the current member's data not read yet."""
        return self._pending

    def _extension_data(self, size: int) -> bytes:
        padded = size + (-size % BLOCK)
        data = self._take(padded)
        if len(data) != padded:
            raise InvalidArchive("the layer tar ends in the middle of a header; the stream is truncated")
        return data[:size]

    def next(self) -> Header | None:
        """The next member's header, or ``None`` at the end of the archive."""
        if self._pending:
            self.skip_data()
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            block = self._take(BLOCK)
            if len(block) < BLOCK:
                if not block and not pax and long_name is None:
                    return None  # some writers omit the two zero blocks
                raise InvalidArchive("the layer tar ends in the middle of a header; the stream is truncated")
            if block[0] == 0 and block == _ZERO_BLOCK:
                return None
            raw_checksum = block[148:156]
            try:
                checksum = int(raw_checksum.rstrip(_NUL_SPACE) or b"0", 8)
                size = int(block[124:136].rstrip(_NUL_SPACE) or b"0", 8)
            except ValueError:
                checksum = _number(raw_checksum, "checksum")
                size = _number(block[124:136], "size")
            if checksum != byte_sum(block[:148] + _CHECKSUM_SPACES + block[156:]):
                _verify_signed_checksum(block, checksum)
            typeflag = block[156:157]
            if typeflag == _PAX:
                pax.update(_parse_pax(self._extension_data(size)))
            elif typeflag == _PAX_GLOBAL:
                self._extension_data(size)  # global defaults (e.g. git archive's comment) carry nothing we apply
            elif typeflag == _GNU_LONGNAME:
                long_name = self._extension_data(size).rstrip(b"\x00")
            elif typeflag == _GNU_LONGLINK:
                long_link = self._extension_data(size).rstrip(b"\x00")
            else:
                hdr = _decode(_USTAR.unpack(block), size, pax, long_name, long_link)
                if hdr.size:
                    self._start(hdr.size)
                return hdr


def _verify_signed_checksum(block: bytes, stored: int) -> None:
    # Some old writers summed the bytes as signed chars.
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    if stored != signed:
        raise InvalidArchive("a layer tar header has a bad checksum; the stream is not a tar or is corrupt")


def _number(field_bytes: bytes, what: str) -> int:
    try:
        # The common case: octal digits ended by NUL or space.
        return int(field_bytes.rstrip(b"\x00 ") or b"0", 8)
    except ValueError:
        pass  # base-256, leading spaces or garbage after a NUL: the careful path below
    if field_bytes[:1] and field_bytes[0] & 0x80:
        # GNU base-256: big-endian two's complement, first byte's top bit set.
        value = int.from_bytes(field_bytes, "big", signed=False) & ~(0x80 << (8 * (len(field_bytes) - 1)))
        if field_bytes[0] & 0x40:
            value -= 1 << (8 * len(field_bytes) - 1)
        return value
    text = field_bytes.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError as exc:
        raise InvalidArchive(f"a layer tar header has a bad {what} field {text!r}; the stream is corrupt") from exc


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError as exc:
            raise InvalidArchive("a layer tar has a malformed PAX header; the stream is corrupt") from exc
        record = data[space + 1 : pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep or length <= 0:
            raise InvalidArchive("a layer tar has a malformed PAX record; the stream is corrupt")
        out[key] = value
        pos += length
    return out


def _pax_mtime_ns(value: bytes) -> int:
    negative = value.startswith(b"-")
    whole, _, frac = value.lstrip(b"-").partition(b".")
    try:
        ns = int(whole or b"0") * 1_000_000_000 + int((frac + b"000000000")[:9])
    except ValueError as exc:
        raise InvalidArchive(f"a layer tar has a bad PAX mtime {value!r}; the stream is corrupt") from exc
    return -ns if negative else ns


def _decode(
    fields: tuple[bytes, ...],
    size: int,
    pax: dict[bytes, bytes],
    long_name: bytes | None,
    long_link: bytes | None,
) -> Header:
    (raw_name, raw_mode, raw_uid, raw_gid, _, raw_mtime, _, typeflag, raw_link, magic, _, _, major, minor, prefix) = (
        fields
    )
    name = raw_name.partition(b"\x00")[0]
    if magic == b"ustar\x0000" and prefix[0]:
        name = prefix.partition(b"\x00")[0] + b"/" + name
    if pax:
        name = pax.get(b"path", long_name if long_name is not None else name)
        linkname = pax.get(b"linkpath", long_link if long_link is not None else raw_link.partition(b"\x00")[0])
    else:
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else raw_link.partition(b"\x00")[0]
    if typeflag in (b"\x00", _CONTIGUOUS):
        typeflag = DIRECTORY if name.endswith(b"/") else REGULAR
    elif typeflag not in _MEMBER_TYPES:
        shown = name.decode("utf-8", "replace")
        raise InvalidArchive(f"layer tar member '{shown}' has unsupported type {typeflag!r}; rebuild the layer")
    try:
        mode = int(raw_mode.rstrip(_NUL_SPACE) or b"0", 8)
        uid = int(raw_uid.rstrip(_NUL_SPACE) or b"0", 8)
        gid = int(raw_gid.rstrip(_NUL_SPACE) or b"0", 8)
        mtime = int(raw_mtime.rstrip(_NUL_SPACE) or b"0", 8)
    except ValueError:
        mode, uid, gid, mtime = (_number(f, "number") for f in (raw_mode, raw_uid, raw_gid, raw_mtime))
    hdr = Header(
        name.decode("utf-8", "surrogateescape"),
        typeflag,
        mode & 0o7777,
        uid,
        gid,
        # Only regular files carry data; POSIX says to ignore the size field of the other types.
        size if typeflag == REGULAR else 0,
        mtime * 1_000_000_000,
        linkname.decode("utf-8", "surrogateescape"),
    )
    if typeflag in (CHAR, BLOCKDEV):
        hdr.devmajor = _number(major, "devmajor")
        hdr.devminor = _number(minor, "devminor")
    if pax:
        _apply_pax(hdr, pax)
    return hdr


def _apply_pax(hdr: Header, pax: dict[bytes, bytes]) -> None:
    for key, value in pax.items():
        if key == b"mtime":
            hdr.mtime_ns = _pax_mtime_ns(value)
        elif key == b"uid":
            hdr.uid = int(value)
        elif key == b"gid":
            hdr.gid = int(value)
        elif key == b"size" and hdr.type == REGULAR:
            hdr.size = int(value)
        elif key.startswith(b"SCHILY.xattr."):
            hdr.xattrs[key[len(_XATTR) :].decode("utf-8", "surrogateescape")] = value
