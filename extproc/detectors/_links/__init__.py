"""The parts of the `unsafe_links` detector (extproc/detectors/unsafe_links.py wires them together).

grammar     bounds and the RE2 patterns, each Markdown one built together with the language of its prefixes
hosts       host names as browsers and RFC 3986 parsers read them; allowlist entries
urls        `UrlPolicy`: is one URL safe under the rule's params
text_index  `Index` (position indexes over one text) and `Hit` (one finding before it becomes a `Finding`)
html        HTML tags, attributes and styles
markdown    Markdown links, images, reference definitions and autolinks
bare        bare `https://...` and `www....` URLs
rewrite     the replacement text of each hit, and keeping replacements from forming new constructs
holding     the streaming hold-back: could a construct still open at the end of the text grow or change
"""
