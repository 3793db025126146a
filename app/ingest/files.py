"""The text and title of one document file: plain text, Markdown, HTML, PDF.

HTML is parsed with BeautifulSoup over lxml and reduced to its main text: scripts, styles, navigation, headers,
footers, asides and forms go; when the page marks its content (``<main>``, ``<article>``, ``role="main"``) only that
is kept. Markdown is rendered by markdown-it and read like HTML, so markup never reaches the model. PDF text comes
from pypdf, page by page. Chosen by measuring them against trafilatura and pdfminer.six (docs/INGEST.md).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
# The same formats by media type, for a file sent over HTTP
MEDIA_TYPES = {"application/pdf": ".pdf", "text/html": ".html", "application/xhtml+xml": ".html",
               "text/markdown": ".md", "text/plain": ".txt"}  # fmt: skip
_BOILERPLATE_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
                     "iframe", "button", "select", "dialog")  # fmt: skip
_BOILERPLATE_ROLES = ("navigation", "banner", "contentinfo", "search", "complementary")
_BLOCKS = ("p", "div", "section", "article", "main", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6",
           "blockquote", "pre", "table", "ul", "ol", "dl", "dt", "dd", "figcaption", "hr")  # fmt: skip
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_LINE_SPACE = re.compile(r"[ \t\r\f\v\u00a0]+")


class UnreadableFile(ValueError):
    """A document file that cannot be read; the message says why."""


@dataclass(frozen=True)
class FileText:
    text: str
    title: str | None


def read_document_file(path: Path) -> FileText:
    """The main text and the title of a ``.txt``, ``.md``, ``.html``/``.htm`` or ``.pdf`` file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read it ({exc.strerror or exc})") from exc
    return document_text(data, path.suffix)


def document_text(data: bytes, suffix: str) -> FileText:
    """The main text and the title of a document's bytes, in the format its file suffix names."""
    suffix = suffix.lower()
    try:
        if suffix == ".pdf":
            extracted = pdf_text(data)
        elif suffix in (".html", ".htm"):
            extracted = html_text(data)
        elif suffix in (".md", ".markdown"):
            extracted = markdown_text(_utf8(data))
        elif suffix == ".txt":
            extracted = FileText(tidy(_utf8(data)), None)
        else:
            raise UnreadableFile(f"unsupported file type {suffix or '(none)'}; expected one of {DOCUMENT_SUFFIXES}")
    except UnreadableFile:
        raise
    except Exception as exc:  # a parser's own error on a damaged file: name it, the import goes on
        raise UnreadableFile(f"cannot parse it as {suffix[1:].upper()} ({type(exc).__name__}: {exc})") from exc
    if not extracted.text:
        scanned = " (a scanned PDF needs OCR first)" if suffix == ".pdf" else ""
        raise UnreadableFile(f"it holds no text{scanned}")
    return extracted


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"it is not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc


def tidy(text: str) -> str:
    """Spaces collapsed within lines, at most one blank line between paragraphs, no surrounding whitespace."""
    lines = (_LINE_SPACE.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def html_text(markup: bytes | str) -> FileText:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    title_tag = soup.find("title")
    title = tidy(title_tag.get_text(" ")) if title_tag else ""
    for tag in soup.find_all(_BOILERPLATE_TAGS):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": list(_BOILERPLATE_ROLES)}):
        tag.decompose()
    body = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article") or soup.body or soup
    if not title and (heading := body.find(["h1", "h2"])):
        title = tidy(heading.get_text(" "))
    for block in body.find_all(_BLOCKS):  # paragraph breaks where the page has blocks: sentence units for the splitter
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    return FileText(tidy(body.get_text()), title or None)


def markdown_text(source: str) -> FileText:
    from markdown_it import MarkdownIt

    rendered = html_text(MarkdownIt("commonmark").enable("table").render(source))
    heading = re.search(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", source, re.MULTILINE)
    return FileText(rendered.text, tidy(heading.group(1)) if heading else rendered.title)


def pdf_text(data: bytes) -> FileText:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("it is encrypted with a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except PdfReadError as exc:
        raise UnreadableFile(f"it is not a readable PDF ({exc})") from exc
    return FileText(tidy("\n\n".join(pages)), tidy(title) if isinstance(title, str) and title.strip() else None)
