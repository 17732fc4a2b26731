#!/usr/bin/env python3
"""Writes the seed corpus of the dns fuzz target (fuzz/corpus/dns/seed_*): DNS queries as dig and
resolvers send them (EDNS0 with a cookie, 0x20 mixed case), and the malformed messages the codec
must refuse. Run it again after changing a seed; crash-* files found by fuzzing sit beside the
seeds and are kept as they are."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "dns")

A, NS, SOA, MX, TXT, AAAA, OPT, AXFR, ANY = 1, 2, 6, 15, 16, 28, 41, 252, 255
IN, CH = 1, 3


def name(dotted):
    out = b""
    for label in dotted.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)


def opt(size=1232, version=0, do=False, options=b""):
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack(">HHIH", OPT, size, ttl, len(options)) + options


COOKIE = struct.pack(">HH", 10, 8) + bytes.fromhex("0123456789abcdef")


def query(qname, qtype, qclass=IN, edns=None, **kw):
    ar = 1 if edns is not None else 0
    msg = header(ar=ar, **kw) + name(qname) + struct.pack(">HH", qtype, qclass)
    if edns is not None:
        msg += edns
    return msg


def write(label, data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "seed_" + label), "wb") as f:
        f.write(data)


def main():
    dig = opt(1232, options=COOKIE)  # what dig 9.18 sends by default
    write("a", query("pgapp.drawbridge.test", A, edns=dig))
    write("a_plain", query("pgapp.drawbridge.test", A))
    write("aaaa", query("pgapp.drawbridge.test", AAAA, edns=dig))
    write("any", query("pgapp.drawbridge.test", ANY, edns=dig))
    write("soa", query("drawbridge.test", SOA, edns=dig))
    write("ns", query("drawbridge.test", NS))
    write("ns_glue", query("ns1.drawbridge.test", A))
    write("nxdomain", query("nope.drawbridge.test", A, edns=dig))
    write("nodata", query("v4.drawbridge.test", AAAA))
    write("empty_app", query("empty.drawbridge.test", A))
    write("mx_apex", query("drawbridge.test", MX))
    write("refused", query("example.com", A, edns=dig))
    write("root", query(".", NS))
    write("internal", query("pgapp.internal", A, edns=dig))
    write("internal_aaaa", query("PGAPP.Internal", AAAA))
    write("case_0x20", query("PgApP.dRaWbRiDgE.TeSt", A, edns=opt(4096, do=True)))
    write("many_512", query("many.drawbridge.test", A))
    write("many_edns", query("many.drawbridge.test", A, edns=opt(700)))
    write("tiny_edns", query("pgapp.drawbridge.test", A, edns=opt(100)))
    write("badvers", query("pgapp.drawbridge.test", A, edns=opt(1232, version=1)))
    write("axfr", query("drawbridge.test", AXFR))
    write("chaos", query("version.bind", TXT, qclass=CH))
    write("class_any", query("pgapp.drawbridge.test", A, qclass=ANY))
    write("qtype_opt", query("pgapp.drawbridge.test", OPT))
    write("notify", query("drawbridge.test", SOA, flags=(4 << 11)))
    write("update", header(flags=(5 << 11), qd=1) + name("drawbridge.test") + b"\0\x06\0\x01")
    write("response", query("pgapp.drawbridge.test", A, flags=0x8180))
    write("qdcount0", header(qd=0))
    write("qdcount2", header(qd=2) + (name("a.drawbridge.test") + b"\0\x01\0\x01") * 2)
    write("runt", header()[:7])
    # A record in the answer section whose owner points at the question.
    write("answer_rr", header(an=1) + name("pgapp.drawbridge.test") + b"\0\x01\0\x01" +
          b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x04\x7f\0\0\x01")
    # Compression abuse in the question.
    write("ptr_self", header() + b"\xc0\x0c\0\x01\0\x01")
    write("ptr_forward", header() + b"\xc0\x12\0\x01\0\x01" + name("a"))
    write("ptr_header", header() + b"\xc0\x02\0\x01\0\x01")
    write("ptr_loop", header(an=1) + b"\x01a\xc0\x12\0\x01\0\x01" + b"\xc0\x0c\0\x01\0\x01\0\0\0\0\0\0")
    write("label64", header() + b"\x40" + b"a" * 64 + b"\0\0\x01\0\x01")
    write("label_ext", header() + b"\x41\0\0\x01\0\x01")
    write("name256", header() + (b"\x3f" + b"x" * 63) * 4 + b"\0\0\x01\0\x01")
    write("trailing", query("pgapp.drawbridge.test", A) + b"\0")
    write("two_opts", header(ar=2) + name("pgapp.drawbridge.test") + b"\0\x01\0\x01" + dig + dig)
    write("opt_bad_option", query("pgapp.drawbridge.test", A,
                                  edns=opt(options=struct.pack(">HH", 10, 9) + b"\0" * 8)))
    write("opt_in_answer", header(an=1) + name("pgapp.drawbridge.test") + b"\0\x01\0\x01" + dig)
    write("truncated", query("pgapp.drawbridge.test", A, edns=dig)[:-5])


if __name__ == "__main__":
    main()
