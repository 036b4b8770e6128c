"""Writes the demo seed's upload files under a storage root (scripts/run's STORAGE_ROOT).

    python3 scripts/lib/demo-storage.py ROOT < lines of "storage_path|size_bytes"

Each file is written only when absent, with exactly the seeded size: a PDF that opens (its
padding is a comment inside the file, before the cross-reference table) for .pdf, plain text
otherwise. Paths that are absolute or climb out of ROOT are refused.
"""
import os
import sys


def pdf(name, size):
    text = ("CaseHug demo document: " + name).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = "BT /F1 14 Tf 72 720 Td (%s) Tj ET" % text
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        "<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += ("%d 0 obj\n%s\nendobj\n" % (number, obj)).encode()

    def tail(xref_at):
        xref = "xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        xref += "".join("%010d 00000 n \n" % offset for offset in offsets)
        return (xref + "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                % (len(objects) + 1, xref_at)).encode()

    # Comment lines of padding before the xref, whose offset is in the tail: a second pass
    # absorbs a change in that offset's number of digits.
    line = b"%" + b"." * 78 + b"\n"
    room = size - len(body) - len(tail(size))
    for _ in range(2):
        if room < 2:
            return body + tail(len(body))
        padding = (line * (room // len(line) + 1))[:room - 1] + b"\n"
        result = body + padding + tail(len(body) + len(padding))
        room += size - len(result)
    return result


def text(name, size):
    line = ("CaseHug demo file %s: placeholder content.\n" % name).encode()
    return (line * (size // len(line) + 1))[:size]


def main():
    root = os.path.realpath(sys.argv[1])
    os.makedirs(root, exist_ok=True)
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        path, _, size = raw.rpartition("|")
        target = os.path.realpath(os.path.join(root, path))
        if os.path.isabs(path) or not target.startswith(root + os.sep):
            sys.exit("refusing a storage path outside the root: " + path)
        if os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        name = os.path.basename(path)
        data = pdf(name, int(size)) if name.lower().endswith(".pdf") else text(name, int(size))
        with open(target + ".partial", "wb") as out:
            out.write(data)
        os.replace(target + ".partial", target)


main()
