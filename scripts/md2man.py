#!/usr/bin/env python3
"""md2man: turns the man pages' Markdown sources (docs/man/*.md) into roff.

Usage: md2man.py SOURCE.md OUT [--append FILE.md]...

The source starts with a title line `% NAME(SECTION) | description`. The
subset of Markdown understood is the one docs/ uses: `#` headings (level 1
becomes .SH, deeper ones .SS), paragraphs, `-` and `1.` lists, indented or
fenced code blocks, pipe tables (each row becomes a tagged paragraph:
first cell the tag, the others "Header: cell"), `code`, **bold**, *italic*,
[text](link) and HTML comments (dropped). --append adds another Markdown
file's body (its own level-1 title dropped, its level-2 headings as sections), so
that lmpool.yaml(5) carries docs/config.md, generated from the settings
table, rather than a second copy of it.
"""
import datetime
import os
import re
import sys


def escape(text):
    text = text.replace("\\", "\\e")
    # a leading . or ' would be a roff request
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text.replace("-", "\\-")


def inline(text):
    text = re.sub(r"<!--.*?-->", "", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", text)
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            out.append("\\fB" + escape(p[1:-1]) + "\\fR")
            continue
        p = escape(p)
        p = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", p)
        p = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"\\fI\1\\fR", p)
        out.append(p)
    line = "".join(out)
    return line


def convert(lines, out, shift=0):
    i = 0
    para = []
    in_comment = False

    def flush():
        if para:
            out.append(".PP")
            out.append(inline(" ".join(s.strip() for s in para)))
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip("\n")
        if in_comment:
            if "-->" in line:
                in_comment = False
            i += 1
            continue
        if line.strip().startswith("<!--"):
            if "-->" not in line:
                in_comment = True
            i += 1
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        m = re.match(r"^(#+)\s+(.*)", line)
        if m:
            flush()
            level = len(m.group(1)) + shift
            title = m.group(2).strip()
            out.append((".SH " if level <= 1 else ".SS ") + '"' + inline(title.upper() if level <= 1 else title) + '"')
            i += 1
            continue
        if line.startswith("```"):
            flush()
            out.append(".PP")
            out.append(".nf")
            out.append(".RS 4")
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append(escape(lines[i].rstrip("\n")) or "\\&")
                i += 1
            out.append(".RE")
            out.append(".fi")
            i += 1
            continue
        if line.startswith("    ") and not para:
            out.append(".PP")
            out.append(".nf")
            out.append(".RS 4")
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                if not lines[i].strip():
                    # a blank line inside the block, unless the block ends here
                    if i + 1 < len(lines) and lines[i + 1].startswith("    "):
                        out.append("\\&")
                    i += 1
                    continue
                out.append(escape(lines[i].rstrip("\n")[4:]))
                i += 1
            out.append(".RE")
            out.append(".fi")
            continue
        if line.startswith("|"):
            flush()
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            i += 2  # the header and the |---| line
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                out.append(".TP")
                out.append(inline(cells[0]))
                rest = []
                for h, c in zip(header[1:], cells[1:]):
                    if h.lower() == "description" or not h:
                        rest.append(c)
                    else:
                        rest.append(h + ": " + c + ".")
                out.append(inline(" ".join(rest)))
                i += 1
            continue
        m = re.match(r"^(\s*)(-|\d+\.)\s+(.*)", line)
        if m:
            flush()
            bullet = "\\(bu" if m.group(2) == "-" else m.group(2)
            item = [m.group(3)]
            i += 1
            while i < len(lines) and lines[i].strip() and not re.match(r"^\s*(-|\d+\.)\s+", lines[i]) \
                    and lines[i].startswith(" "):
                item.append(lines[i].strip())
                i += 1
            out.append(".IP " + bullet + " 4")
            out.append(inline(" ".join(item)))
            continue
        para.append(line)
        i += 1
    flush()


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.stderr.write("usage: md2man.py SOURCE.md OUT [--append FILE.md]...\n")
        return 2
    src, dst, extra = args[0], args[1], []
    rest = args[2:]
    while rest:
        if rest[0] != "--append" or len(rest) < 2:
            sys.stderr.write("md2man.py: unexpected argument %r\n" % rest[0])
            return 2
        extra.append(rest[1])
        rest = rest[2:]
    with open(src, encoding="utf-8") as f:
        lines = f.readlines()
    m = re.match(r"^%\s*(\S+)\((\d)\)\s*\|\s*(.*)", lines[0]) if lines else None
    if not m:
        sys.stderr.write("%s:1: expected '%% NAME(SECTION) | description'\n" % src)
        return 1
    name, section, desc = m.groups()
    # SOURCE_DATE_EPOCH keeps the page reproducible (Debian sets it).
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch) if epoch else datetime.datetime.now().timestamp(),
                                           tz=datetime.timezone.utc)
    out = ['.\\" Generated by scripts/md2man.py from %s; do not edit.' % os.path.basename(src),
           '.TH "%s" "%s" "%s" "lmpool" "lmpool"' % (name.upper(), section, when.strftime("%Y-%m-%d")),
           ".SH NAME",
           escape(name) + " \\- " + inline(desc)]
    convert(lines[1:], out)
    for path in extra:
        with open(path, encoding="utf-8") as f:
            body = f.readlines()
        if body and body[0].startswith("# "):
            body = body[1:]
        convert(body, out, shift=-1)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
