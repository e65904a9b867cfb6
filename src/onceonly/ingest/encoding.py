"""Character encodings of text uploads: detect from a sample, or check the one the user named.

Detection looks at the first `SAMPLE_SIZE` bytes only (the file is streamed afterwards):

1. a UTF-8 BOM → ``utf-8-sig``; a UTF-16 BOM (Excel's "Unicode text") → ``utf-16``;
2. NUL bytes or many control bytes → not text: `file.binary` (with a hint when the bytes are an
   Excel workbook or a ZIP archive);
3. valid UTF-8 (a multibyte character cut by the end of the sample is fine; pure ASCII counts) →
   ``utf-8``, confident;
4. otherwise GB18030 (a superset of GBK and GB2312): confident when the sample decodes and its
   non-ASCII characters are plausible Chinese text — at least 90 % of them in GB2312, the common
   6,763 hanzi with their punctuation and full-width forms. Anything else (Big5, Latin-1, random
   bytes that happen to decode) is *not* confident, and the reader stops with
   `encoding.uncertain` asking for ``--encoding`` instead of guessing wrong.

A file whose later bytes do not decode in the detected encoding (UTF-8 for the first rows, GBK
further down) is rejected as a whole with `encoding.mixed` naming the row; with an encoding the
user named, the rule is `encoding.invalid`. The reverse mix (GB18030 first, UTF-8 later) cannot
always be caught: UTF-8 bytes often decode as (wrong) GB18030 characters; such values then fail
their field checks or show up garbled in the quarantine.
"""

from __future__ import annotations

import codecs

from onceonly.ingest.types import IngestInputError

SAMPLE_SIZE = 64 * 1024
_ALLOWED_CONTROLS = frozenset(b"\t\n\r\x0c\x1a")  # tab, newlines, form feed, DOS end-of-file
_MIN_CONFIDENT_CHARS = 10  # with fewer non-ASCII characters every one must be a common one


def _signature_hint(sample: bytes) -> tuple[str, str]:
    if sample.startswith(b"PK\x03\x04"):
        return "（这像是 Excel .xlsx 工作簿或 ZIP 压缩包，请以 .xlsx 上传或另存为 CSV）", \
            " (it looks like an Excel .xlsx workbook or a ZIP archive: upload it as .xlsx or save it as CSV)"
    if sample.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "（这像是旧版 Excel .xls 工作簿，请以 .xls 上传）", \
            " (it looks like a legacy Excel .xls workbook: upload it as .xls)"
    if sample.startswith(b"%PDF"):
        return "（这是 PDF 文件）", " (it is a PDF document)"
    return "", ""


def binary_error(sample: bytes) -> IngestInputError:
    zh_hint, en_hint = _signature_hint(sample)
    return IngestInputError("file.binary", f"文件不是文本文件，无法按 CSV/JSON 读取{zh_hint}",
                            f"the file is not text and cannot be read as CSV/JSON{en_hint}")


def looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    if not sample:
        return False
    controls = sum(1 for b in sample[:8192] if b < 0x20 and b not in _ALLOWED_CONTROLS)
    return controls > max(2, len(sample[:8192]) // 100)


def _decodes(sample: bytes, encoding: str) -> str | None:
    """The decoded sample, tolerating one multibyte character cut at the end; None if invalid."""
    try:
        return codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return None


def _gb_plausible(text: str) -> bool:
    wide = [ch for ch in text if ord(ch) > 0x7F]
    if not wide:
        return True
    common = 0
    for ch in set(wide):
        try:
            ch.encode("gb2312")
        except UnicodeEncodeError:
            continue
        common += wide.count(ch)
    share = common / len(wide)
    return share >= 0.9 and (len(wide) >= _MIN_CONFIDENT_CHARS or share == 1.0)


def detect_encoding(sample: bytes) -> tuple[str, bool]:
    """(encoding, confident) for the first bytes of a text file; raises `file.binary`."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", True
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True
    if looks_binary(sample):
        raise binary_error(sample)
    if _decodes(sample, "utf-8") is not None:
        return "utf-8", True
    text = _decodes(sample, "gb18030")
    if text is None:
        return "gb18030", False
    return "gb18030", _gb_plausible(text)


def resolve_encoding(name: str) -> str:
    """The codec name Python uses for a user-given encoding (`gbk`, `GB2312`, `utf8`, `UTF-8-SIG`…).
    GBK and GB2312 are read as GB18030, their superset, so a rare character does not fail a file."""
    try:
        info = codecs.lookup(name.strip())
    except (LookupError, ValueError):
        raise IngestInputError("encoding.unknown", f"不认识的字符编码“{name[:50]}”，可用如 utf-8、gb18030、gbk",
                               f"unknown character encoding {name[:50]!r}; use e.g. utf-8, gb18030, gbk") from None
    if info.name in ("gbk", "gb2312"):
        return "gb18030"
    if info.name == "utf-8":
        return "utf-8-sig"  # a BOM, if there is one, is not part of the first header
    return info.name


def uncertain_error() -> IngestInputError:
    return IngestInputError(
        "encoding.uncertain",
        "无法可靠判断文件的字符编码（不是 UTF-8，也不像 GB18030/GBK 中文文本），"
        "请用 --encoding 指明，如 --encoding gbk",
        "cannot tell the file's character encoding with confidence (not UTF-8, and not plausible "
        "GB18030/GBK Chinese text); name it with --encoding, e.g. --encoding gbk")


def decode_error(encoding: str, row: int, *, detected: bool) -> IngestInputError:
    if detected:
        return IngestInputError(
            "encoding.mixed",
            f"第{row}行附近的内容不是文件开头所用的 {encoding} 编码（一个文件里混用了多种编码），请统一另存为 UTF-8",
            f"near row {row} the bytes are not {encoding}, the encoding of the start of the file (mixed "
            "encodings in one file); save the whole file as UTF-8", row=row)
    return IngestInputError(
        "encoding.invalid",
        f"第{row}行附近的内容不是指定的 {encoding} 编码，请检查 --encoding",
        f"near row {row} the bytes are not valid {encoding}; check --encoding", row=row)
