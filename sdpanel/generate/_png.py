"""Just enough image format handling for generation, with no imaging library.

- :func:`image_info` reads a PNG / JPEG / WebP header for the size *before* anything is
  decoded, so a decompression bomb is refused from its first bytes;
- :func:`decode_png` fully decodes a PNG (CRC of every chunk, bounded inflate, filters) so
  a truncated or corrupt upload is refused here rather than deep inside a WebUI;
- :func:`encode_png` writes RGB images (the stubs' outputs, tests);
- :func:`with_text` puts the A1111 ``parameters`` chunk into a PNG that other tools read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PNG_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


class ImageError(ValueError):
    """An image that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "png" | "jpeg" | "webp"
    width: int
    height: int


@dataclass(frozen=True)
class DecodedPNG:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered scanlines (8-bit samples; 16-bit keeps both bytes)
    bit_depth: int
    color_type: int = 2

    @property
    def direct(self) -> bool:
        """Samples are values (not palette indexes) of 8 or 16 bits: a mask can be read."""
        return self.color_type != 3 and self.bit_depth >= 8 and bool(self.rows)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIG):
        raise ImageError("not a PNG file")
    out, pos = [], len(PNG_SIG)
    while pos < len(data):
        if pos + 12 > len(data):
            raise ImageError("PNG is truncated (a chunk header is cut off)")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ImageError("PNG is truncated (a chunk is cut off)")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(ctype + body) != crc:
            raise ImageError(f"PNG is corrupt (bad checksum in its {ctype.decode('latin-1')} chunk)")
        out.append((ctype, body))
        pos += 12 + length
        if ctype == b"IEND":
            return out
    raise ImageError("PNG is truncated (no IEND chunk)")


def image_info(data: bytes) -> ImageInfo:
    """Format and size from the header only (cheap, bomb-safe)."""
    if data.startswith(PNG_SIG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("PNG is truncated (no IHDR header)")
        w, h = struct.unpack(">II", data[16:24])
        return ImageInfo("png", w, h)
    if data[:2] == b"\xff\xd8":
        return ImageInfo("jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageInfo("webp", *_webp_size(data))
    raise ImageError("not a PNG, JPEG or WebP image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError("JPEG is corrupt (bad marker)")
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (seg,) = struct.unpack(">H", data[pos + 2:pos + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                break
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
                raise ImageError("JPEG is truncated (no end-of-image marker)")
            return w, h
        pos += 2 + seg
    raise ImageError("JPEG is truncated (no frame header)")


def _webp_size(data: bytes) -> tuple[int, int]:
    (riff_len,) = struct.unpack("<I", data[4:8])
    if riff_len + 8 > len(data):
        raise ImageError("WebP is truncated")
    kind, body = data[12:16], data[20:]
    if kind == b"VP8 " and len(body) >= 10:
        w, h = struct.unpack("<HH", body[6:10])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and len(body) >= 5:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(body) >= 10:
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    raise ImageError("WebP is corrupt (unknown chunk)")


def decode_png(data: bytes, max_pixels: int) -> DecodedPNG:
    """Decode every pixel; refuses images over ``max_pixels`` before inflating anything."""
    info = image_info(data)
    if info.format != "png":
        raise ImageError(f"expected a PNG, got {info.format.upper()}")
    if info.width * info.height > max_pixels:
        raise ImageError(f"image is {info.width}x{info.height}, over the {max_pixels} pixel limit")
    chunks = _chunks(data)
    ihdr = chunks[0][1]
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    if w == 0 or h == 0 or ctype not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageError("PNG header is invalid")
    channels = _CHANNELS[ctype]
    bpp = max(1, channels * depth // 8)
    stride = (w * channels * depth + 7) // 8
    expected = (stride + 1) * h
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(b for t, b in chunks if t == b"IDAT"), expected + 1)
    except zlib.error as exc:
        raise ImageError(f"PNG pixel data is corrupt ({exc})") from None
    if interlace:  # Adam7 pass sizes differ; the stream must still inflate completely
        if not inflater.eof:
            raise ImageError("PNG pixel data is truncated")
        return DecodedPNG(w, h, channels, [], depth, ctype)
    if len(raw) < expected:
        raise ImageError("PNG pixel data is truncated")
    rows, prev = [], bytearray(stride)
    for y in range(h):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(ftype, line, prev, bpp)
        rows.append(bytes(line))
        prev = line
    return DecodedPNG(w, h, channels, rows, depth, ctype)


def _unfilter(ftype: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(line)
    if ftype == 0:
        return
    if ftype == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif ftype == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif ftype == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif ftype == 4:
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise ImageError(f"PNG pixel data is corrupt (unknown filter {ftype})")


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png(width: int, height: int, rows: list[bytes], channels: int = 3,
               text: dict[str, str] | None = None) -> bytes:
    """8-bit gray (1), RGB (3) or RGBA (4) rows → PNG bytes."""
    ctype = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, ctype, 0, 0, 0)
    body = [_chunk(b"IHDR", ihdr)] + [_text_chunk(k, v) for k, v in (text or {}).items()]
    return PNG_SIG + b"".join(body) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _text_chunk(key: str, value: str) -> bytes:
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
    except UnicodeEncodeError:  # tEXt is Latin-1 only; iTXt carries UTF-8 (as Pillow writes it)
        return _chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode())


def with_text(png: bytes, key: str, value: str) -> bytes:
    """``png`` with one text chunk ``key`` (any older one of that key dropped), right after
    IHDR so readers that stop early still find it."""
    out = [PNG_SIG]
    for ctype, body in _chunks(png):
        if ctype in (b"tEXt", b"iTXt", b"zTXt") and body.split(b"\x00", 1)[0] == key.encode("latin-1"):
            continue
        out.append(_chunk(ctype, body))
        if ctype == b"IHDR":
            out.append(_text_chunk(key, value))
    return b"".join(out)


def read_text(png: bytes) -> dict[str, str]:
    """tEXt / iTXt chunks of a PNG as a dict."""
    found: dict[str, str] = {}
    for ctype, body in _chunks(png):
        if ctype == b"tEXt":
            k, _, v = body.partition(b"\x00")
            found[k.decode("latin-1")] = v.decode("latin-1")
        elif ctype == b"iTXt":
            k, _, rest = body.partition(b"\x00")
            # compression flag, method, language\0, translated keyword\0, text
            rest = rest[2:]
            _lang, _, rest = rest.partition(b"\x00")
            _tk, _, text = rest.partition(b"\x00")
            found[k.decode("latin-1")] = text.decode("utf-8", "replace")
    return found


def gradient_png(width: int, height: int, seed: int = 0, text: dict[str, str] | None = None) -> bytes:
    """A real RGB gradient of the requested size (tinted by ``seed``): stub output."""
    r0, g0 = seed % 256, (seed // 256) % 256
    reds = bytes((r0 + x * 255 // max(1, width - 1)) & 0xFF for x in range(width))
    rows = []
    for y in range(height):
        row = bytearray(width * 3)
        row[0::3] = reds
        row[1::3] = bytes([(g0 + y * 255 // max(1, height - 1)) & 0xFF]) * width
        row[2::3] = b"\x80" * width
        rows.append(bytes(row))
    return encode_png(width, height, rows, 3, text)
