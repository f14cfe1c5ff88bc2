#!/usr/bin/env python3
"""Write the fuzz targets' starting inputs into fuzz/seeds/TARGET/.

Each target's first input byte picks its mode (see tunnel/src/fuzzing.rs and
gateway/src/fuzzing.rs): even = raw bytes into the parser, odd = a script
that seals, tampers and delivers. Seeds cover both modes of each target and
the project's own sample files. Run once; the fuzzer grows fuzz/corpus/.
"""
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(ROOT, "..", "data")


def write(target, name, data):
    d = os.path.join(ROOT, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def record_script(records, tamper_at=0, tamper_with=0, pieces=()):
    out = bytearray([1, len(records)])
    for kind, payload in records:
        out += bytes([kind]) + struct.pack(">H", len(payload)) + payload
    out += struct.pack(">H", tamper_at) + bytes([tamper_with])
    for p in pieces:
        out += struct.pack(">H", p)
    return bytes(out)


# records
write("records", "raw-zeros", bytes(64))
write("records", "one-data", record_script([(0, b"GET / HTTP/1.1\r\n")]))
write("records", "mixed", record_script(
    [(0, b"x" * 300), (1, bytes(16)), (2, struct.pack(">QQ", 4096, 65536)),
     (3, struct.pack(">qQ", 5_000_000, 1 << 20) + b"EUR"), (4, b"\x01")],
    pieces=(1, 7, 19, 20, 21, 400)))
write("records", "tampered", record_script([(0, b"abc"), (0, b"def")], 30, 0x80))
write("records", "full-size", record_script([(0, bytes(16384))], pieces=(8192,)))

# handshake
slot = bytes((i * 29 + 3) % 256 for i in range(20))  # ticket, padding lengths
write("handshake", "raw", bytes([0]) + slot + bytes(48 + 64))
write("handshake", "sealed", bytes([1]) + slot + bytes([0, 0, 1, 0]) + bytes(40))
write("handshake", "tampered-hello", bytes([1]) + slot + bytes([5, 0x10, 1, 0]) + bytes(40))
write("handshake", "tampered-reply", bytes([1]) + slot + bytes([70, 0x01, 1, 0]) + bytes(40))
write("handshake", "old-version", bytes([1]) + slot + bytes([0, 0, 0, 1]) + bytes(40))


# pad header
def header(slots, data_size, gateways):
    h = bytearray(4096)
    h[0:8] = b"PADNET\r\n"
    h[8:10] = struct.pack(">H", 1)
    h[12:20] = bytes(range(8))
    h[20:24] = struct.pack(">I", slots)
    h[24:26] = struct.pack(">H", 256)
    h[28:36] = struct.pack(">Q", data_size)
    h[36:44] = struct.pack(">Q", 1_790_000_000)
    h[44:52] = struct.pack(">q", 5_000_000)
    h[84] = len(gateways)
    at = 85
    for g in gateways:
        g = g.encode()
        h[at] = len(g)
        h[at + 1:at + 1 + len(g)] = g
        at += 1 + len(g)
    h[4092:4096] = struct.pack(">I", zlib.crc32(bytes(h[:4092])))
    return bytes(h)


write("pad_header", "raw-demo", bytes([0]) + header(4096, 64 << 20, ["127.0.0.1:7000"]))
write("pad_header", "fixed-two-gateways", bytes([1]) + header(1, 4096, ["a:1", "[::1]:7000"]))
write("pad_header", "fixed-empty", bytes([1]))

# policy: each sample policy, then a host
for name in sorted(os.listdir(os.path.join(DATA, "policies"))):
    with open(os.path.join(DATA, "policies", name), "rb") as f:
        src = f.read()
    write("policy", name, src + b"\0" + b"news.example.org")
write("policy", "host-only", b"\0" + b"XN--BCHER-KVA.example.")

# tariff: the sample, then amounts
with open(os.path.join(DATA, "tariff.toml"), "rb") as f:
    tariff = f.read()
write("tariff", "sample", tariff + b"\0" + bytes(range(64)))
write("tariff", "odd-prices", b'currency = "EUR"\nper_mib = "0.012345"\nper_request = "0.000321"\n'
      + b"\0" + bytes(range(255, 191, -1)))
write("tariff", "free", b'currency = "USD"\nper_mib = "0"\nper_request = "0"\n' + b"\0" + bytes(32))


# front: a CONNECT host, then a ClientHello (TLS 1.2 record, SNI, supported versions)
def client_hello(name):
    name = name.encode()
    sni = struct.pack(">HBH", len(name) + 3, 0, len(name)) + name
    exts = struct.pack(">HH", 0, len(sni)) + sni
    exts += struct.pack(">HHB", 0x2B, 3, 2) + b"\x03\x04"
    exts += struct.pack(">HHH", 0x0A, 4, 2) + b"\x00\x1d"
    exts += struct.pack(">HHH", 0x0D, 4, 2) + b"\x08\x04"
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


write("front", "same-host", b"allowed.example\0" + client_hello("allowed.example"))
write("front", "other-host", b"allowed.example\0" + client_hello("denied.example"))
write("front", "cleartext", b"allowed.example\0GET / HTTP/1.1\r\nHost: denied.example\r\n\r\n")
write("front", "split", b"allowed.example\0" + client_hello("allowed.example")[:9])

# site_input: a kind byte (0 registration, 1 price change, 2 categories file), then the body
write("site_input", "register", b"\0" + b'{"host": "news.example:8080", "per_hit": "0.002", "per_mib": "0.01", '
      b'"premium": [{"prefix": "/reports/", "per_hit": "0.05"}]}')
write("site_input", "register-v6", b'\0{"host": "[::1]:8123", "per_hit": "-0.000001"}')
write("site_input", "set", b'\1{"per_hit": "-0.5", "premium": []}')
with open(os.path.join(DATA, "categories.toml"), "rb") as f:
    write("site_input", "categories", b"\2" + f.read())

# site_price: the header value a gateway sends with a priced site's response
write("site_price", "premium", b"host=news.example; per_hit=0.002; per_mib=0.01; hit=0.05; currency=EUR")
write("site_price", "negative", b"host=ads.example; per_hit=-1; per_mib=0; hit=-1; currency=USD")

# account_request: an operation byte (0 open .. 6 receive, Operation::ALL order), then the JSON body
write("account_request", "open", b'\0{"pin": "246810"}')
write("account_request", "show", b'\2{"account": "8805-2008-5758-2694", "pin": "246810"}')
write("account_request", "cancel", b'\3{"account": "8805200857582694", "pin": "246810", "serial": "3f9a-71c2-0b4e-d815"}')
write("account_request", "withdraw", b'\5{"account": "8805-2008-5758-2694", "pin": "246810", "amount": "1.25"}')
write("account_request", "receive", b'\6{"serial": "3f9a-71c2-0b4e-d815", "proof": "' + b"ab" * 64 + b'"}')


# pad_upload: a chunk-size byte, then a pad file: a whole small one (8 slots,
# one page of data), one with its first slots erased, one cut short
def pad_file(slots=8, data=4096, erased=0):
    body = bytes((i * 7 + 3) % 251 for i in range(slots * 256))
    body = bytes(256 * erased) + body[256 * erased:]
    end = 4096 + slots * 256
    pad_to = -(-end // 4096) * 4096
    return header(slots, data, ["127.0.0.1:7000"]) + body + bytes(pad_to - end) + bytes(data)


write("pad_upload", "whole", b"\7" + pad_file())
write("pad_upload", "erased", b"\x40" + pad_file(erased=5))
write("pad_upload", "cut", b"\1" + pad_file()[:6000])
write("pad_upload", "junk", b"\3" + bytes(range(256)) * 8)
