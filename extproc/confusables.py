"""Character tables for `extproc.normalize`: look-alike letters, invisible characters, encoding alphabets.

CONFUSABLES maps letters from other scripts that render like ASCII letters to the letter they imitate. Only
look-alikes that NFKC leaves alone (or turns into another non-ASCII letter) are listed: fullwidth,
mathematical, circled and ligature forms are already handled by NFKC. Small capitals fold to the lowercase
letter. Each string in _PAIRS is a run of (look-alike, ASCII) pairs.
"""

from __future__ import annotations

import string

_PAIRS = (
    # Cyrillic
    ("аaвbеeҽeһhіiјjкkмmнhоoпnрpсcтtуyхxѕsԁdԛqԝwӏlьbүyѵvѡw"
    "АAВBЕEЅSІIЈJКKМMНHОOРPСCТTУYХXԚQԜWӀIҮYѴVԌGԀDЬb"),
    # Greek (lunate sigma would become a final sigma under NFKC, so it is folded first)
    "ΑAΒBΕEΖZΗHΙIΚKΜMΝNΟOΡPΤTΥYΧXϜFοoνvαaιiκkρpυuχxγyϲcϹCϳj",
    # Armenian
    "օoսuհhոnզqցgՏSՕOԼLՍU",
    # Latin extensions, IPA letters and small capitals
    "ıiȷjɑaɡgɩiǀlɪiʏyᴀaʙbᴄcᴅdᴇeɢgʜhᴊjᴋkʟlᴍmɴnᴏoᴘpʀrꜱsᴛtᴜuᴠvᴡwᴢz",
    # Cherokee
    "ᎪAᏴBᏟCᎠDᎬEᏀGᎻHᎫJᏦKᏞLᎷMᏢPᎡRᏚSᎢTᏙVᏔWᏃZ",
    # Lisu (Fraser alphabet)
    "ꓐBꓑPꓓDꓔTꓖGꓗKꓙJꓚCꓜZꓝFꓟMꓠNꓡLꓢSꓣRꓮAꓰEꓲIꓳOꓴU",
)


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for pairs in _PAIRS:
        for i in range(0, len(pairs), 2):
            table[ord(pairs[i])] = pairs[i + 1]
    return table


# code point -> ASCII letter, ready for str.translate
CONFUSABLES: dict[int, str] = _table()

_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE007F), (0xE0100, 0xE01EF),
)
# Zero-width, format, bidi-control, filler and variation-selector characters: removed before detection.
INVISIBLE = frozenset(chr(cp) for low, high in _INVISIBLE_RANGES for cp in range(low, high + 1))
# Unicode tag characters; U+E0020-U+E007E shadow printable ASCII and can smuggle text past a reader.
TAGS = frozenset(chr(cp) for cp in range(0xE0000, 0xE0080))

# Byte classes for the encoded-segment scans (bytes.translate of the text, then bytes.find: linear time).
# BASE64_CLASS: "a" for the standard and URL-safe base64 alphabets, " " otherwise.
_BASE64_ALPHABET = string.ascii_letters + string.digits + "+/-_"
BASE64_CLASS = bytes(0x61 if chr(i) in _BASE64_ALPHABET else 0x20 for i in range(256))
# PERCENT_CLASS: "h" for hex digits, "%" for itself, " " for whitespace, "." otherwise.
PERCENT_CLASS = bytes(
    0x68 if chr(i) in string.hexdigits else 0x25 if i == 0x25 else 0x20 if chr(i).isspace() else 0x2E
    for i in range(256)
)
