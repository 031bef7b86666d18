#!/usr/bin/env python3
"""A hostile restore archive against a real server: how much memory does refusing it cost?

The "Security" issue: a 43 KiB restore archive (valid SHA256SUMS, size and CRC, rows of
1 MiB of zeros, a wrong state hash) grew a server's RSS by 1.7 GB before it was refused.
The fix hashes state.bin's rows as they stream by, before building anything; the goal is
a peak RSS under 64 MiB over the server's baseline. This script measures it:

  1. fills a one-server `fsmhost agent --dev` with KEYS values of VALUE_BYTES zeros each,
     written through the generic API (`POST /v1/apply/kv/set`, a CBOR body: JSON has no
     byte strings), and saves an archive with `GET /v1/snapshot`;
  2. makes a hostile copy: state.bin decompressed (streamed), the last byte of the 32-byte
     state hash that ends it flipped, recompressed at gzip level 9; meta.json's Size and
     CRC (CRC-64/XZ, which is Go's crc64.ECMA as hashicorp/raft uses it: base64 of its 8
     big-endian bytes) and SHA256SUMS recomputed; re-tarred in Consul's order (meta.json,
     state.bin, SHA256SUMS) and gzipped at level 9;
  3. `PUT /v1/snapshot`s it into a fresh server and reads the server's VmRSS before and
     VmHWM (peak) after (VmHWM first reset to the current RSS through /proc/PID/clear_refs,
     so that the start's own peak cannot hide the restore's; VmRSS is also sampled every
     20 ms as a cross-check), then checks the refusal, that the server still serves and
     that its state is unchanged;
  4. for comparison, restores the unmodified archive into another fresh server (which
     legitimately builds the whole state) and reads its peak the same way.

One summary line per measurement, then one JSON line with every number. Standard library
only; one server runs at a time. Usually run through tests/bench-hostile-archive.sh:

  python3 tests/hostile_archive.py --fsmhost target/release/fsmhost --work /tmp/w \
      [--keys 1700] [--value-bytes 1048576] [--clients 2]
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib

MIB = 1 << 20
CHUNK = 1 << 20
GOAL_MIB = 64
# The fill stops (and the run fails) rather than push the machine below this.
MIN_AVAILABLE_MIB = 3072


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# CRC-64 as meta.json records it: CRC-64/XZ (reflected ECMA-182 polynomial, init and
# final xor all ones), which is what Go's crc64.New(crc64.MakeTable(crc64.ECMA)) computes.

def _crc64_table():
    poly = 0xC96C5795D7870F42
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


CRC64_TABLE = _crc64_table()


class Crc64:
    def __init__(self):
        self.crc = 0xFFFFFFFFFFFFFFFF

    def update(self, data):
        crc, table = self.crc, CRC64_TABLE
        for b in data:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        self.crc = crc

    def value(self):
        return self.crc ^ 0xFFFFFFFFFFFFFFFF

    def meta_text(self):
        return base64.b64encode(struct.pack(">Q", self.value())).decode()


assert (lambda c: (c.update(b"123456789"), c.value())[1])(Crc64()) == 0x995DC9BBDF1939FA


# ---------------------------------------------------------------------------------------
# CBOR, just what a kv `set` needs: a map of text keys to text, bytes and an integer.

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | extra]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor_text(s):
    b = s.encode()
    return cbor_head(3, len(b)) + b


def cbor_set_request(key, value):
    return (cbor_head(5, 3)
            + cbor_text("key") + cbor_text(key)
            + cbor_text("value") + cbor_head(2, len(value)) + value
            + cbor_text("flags") + cbor_head(0, 0))


# ---------------------------------------------------------------------------------------
# A one-server fsmhost.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, fsmhost, work, name):
        self.name = name
        self.http = free_port()
        self.server = free_port()
        self.log_path = os.path.join(work, name + ".log")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [fsmhost, "agent", "--dev", "--ports-http", str(self.http),
                 "--ports-server", str(self.server), "--log-level", "warn"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                st, body = self.request("GET", "/v1/status/leader", timeout=2)
                if st == 200 and body.strip() == f'"127.0.0.1:{self.server}"'.encode():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{name} elected no leader in 60 s; see {self.log_path}")

    def conn(self, timeout=600):
        return http.client.HTTPConnection("127.0.0.1", self.http, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=600):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def reset_hwm(self):
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mib(kb):
    return kb / 1024


class RssSampler:
    """The largest VmRSS seen every 20 ms: a cross-check of VmHWM."""

    def __init__(self, srv):
        self.srv, self.peak, self.done = srv, srv.kb("VmRSS"), threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.02):
            try:
                self.peak = max(self.peak, self.srv.kb("VmRSS"))
            except (OSError, KeyError):
                return

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


# ---------------------------------------------------------------------------------------
# 1. Fill a server and save an archive.

def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 1 << 30


def fill(srv, keys, value_bytes, clients):
    value = bytes(value_bytes)
    next_key = iter(range(keys))
    lock = threading.Lock()
    errors = []
    done = [0]

    def worker():
        c = srv.conn(120)
        try:
            while not errors:
                with lock:
                    i = next(next_key, None)
                if i is None:
                    return
                body = cbor_set_request(f"big/{i:05d}", value)
                c.request("POST", "/v1/apply/kv/set", body=body,
                          headers={"Content-Type": "application/cbor"})
                r = c.getresponse()
                answer = r.read()
                if r.status != 200 or answer != b"\xf5":  # CBOR true
                    errors.append(f"big/{i:05d}: {r.status} {answer[:300]!r}")
                    return
                if mem_available_mib() < MIN_AVAILABLE_MIB:
                    errors.append(f"stopped at {done[0]} keys: the machine has under "
                                  f"{MIN_AVAILABLE_MIB} MiB available; use fewer keys")
                    return
                with lock:
                    done[0] += 1
                    if done[0] % max(1, keys // 10) == 0:
                        log(f"  filled {done[0]}/{keys} keys, server RSS "
                            f"{mib(srv.kb('VmRSS')):.0f} MiB")
        except Exception as e:  # noqa: BLE001 - reported, then the run stops
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"filling failed: {errors[0]}")


def save_archive(srv, path):
    c = srv.conn(1200)
    try:
        c.request("GET", "/v1/snapshot")
        r = c.getresponse()
        if r.status != 200:
            raise SystemExit(f"GET /v1/snapshot: {r.status} {r.read()[:300]!r}")
        with open(path, "wb") as out:
            shutil.copyfileobj(r, out, CHUNK)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# 2. The hostile copy.

def read_archive(path, work):
    """Returns (meta bytes, path of state.bin extracted, SHA256SUMS text), checking the
    member order Consul writes."""
    names = []
    meta = sums = None
    state_path = os.path.join(work, "state.bin.orig")
    with tarfile.open(path, "r:gz") as tar:
        for m in tar:
            names.append(m.name)
            f = tar.extractfile(m)
            if m.name == "meta.json":
                meta = f.read()
            elif m.name == "SHA256SUMS":
                sums = f.read().decode()
            elif m.name == "state.bin":
                with open(state_path, "wb") as out:
                    shutil.copyfileobj(f, out, CHUNK)
    if names != ["meta.json", "state.bin", "SHA256SUMS"]:
        raise SystemExit(f"unexpected archive members {names}")
    return meta, state_path, sums


def file_digests(path, with_crc):
    sha, crc, size = hashlib.sha256(), Crc64(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if with_crc:
                crc.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), (crc.meta_text() if with_crc else None), size


def forge_state(src, dst):
    """Streams state.bin from src to dst, flipping the last byte of the state hash that
    ends the decompressed stream (b'E', u64 row total, [32] hash). Returns (decompressed
    bytes, the row total, the recorded hash, the forged hash, and dst's SHA-256, CRC and
    size)."""
    tail_len = 1 + 8 + 32
    dec = zlib.decompressobj(wbits=31)
    enc = zlib.compressobj(9, zlib.DEFLATED, 31, 9)
    sha, crc, size = hashlib.sha256(), Crc64(), [0]
    pending = b""
    plain = 0

    def emit(out, data):
        if data:
            sha.update(data)
            crc.update(data)
            size[0] += len(data)
            out.write(data)

    with open(src, "rb") as f, open(dst, "wb") as out:
        while chunk := f.read(CHUNK):
            data = dec.decompress(chunk, 8 * MIB)
            while True:
                plain += len(data)
                pending += data
                if len(pending) > tail_len:
                    emit(out, enc.compress(pending[:-tail_len]))
                    pending = pending[-tail_len:]
                if not dec.unconsumed_tail:
                    break
                data = dec.decompress(dec.unconsumed_tail, 8 * MIB)
            if dec.eof:
                if dec.unused_data or f.read(1):
                    raise SystemExit("bytes follow state.bin's gzip stream")
        if not dec.eof:
            raise SystemExit("state.bin's gzip stream is truncated")
        tail = bytearray(pending)
        if len(tail) != tail_len or tail[0] != ord("E"):
            raise SystemExit("state.bin does not end with an end record (b'E', u64, [32])")
        rows = struct.unpack(">Q", bytes(tail[1:9]))[0]
        recorded = bytes(tail[9:])
        tail[-1] ^= 0x01
        emit(out, enc.compress(bytes(tail)))
        emit(out, enc.flush())
    return plain, rows, recorded.hex(), bytes(tail[9:]).hex(), sha.hexdigest(), \
        crc.meta_text(), size[0]


def write_archive(path, members):
    """A gzip-compressed (level 9) tar of (name, path or bytes), in order."""
    with open(path, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o600
            info.mtime = int(time.time())
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.size = os.path.getsize(content)
                with open(content, "rb") as f:
                    tar.addfile(info, f)


def make_hostile(archive, work, hostile):
    meta_bytes, state_orig, sums = read_archive(archive, work)
    meta = json.loads(meta_bytes)
    orig_size = os.path.getsize(state_orig)
    # A check of the CRC code against the server's own, where it is cheap enough (the
    # CRC is pure Python, a few MB/s).
    if orig_size <= 64 * MIB:
        sha, crc, _ = file_digests(state_orig, True)
        if crc != meta["CRC"] or f"{sha}  state.bin" not in sums:
            raise SystemExit(f"this script's CRC/SHA-256 of the original state.bin "
                             f"({crc}, {sha}) disagree with meta.json/SHA256SUMS "
                             f"({meta['CRC']}, {sums!r})")
        log(f"  CRC-64 and SHA-256 of the original state.bin match meta.json and SHA256SUMS")
    state_forged = os.path.join(work, "state.bin.forged")
    plain, rows, recorded, forged, sha, crc, size = forge_state(state_orig, state_forged)
    meta["Size"], meta["CRC"] = size, crc
    new_meta = json.dumps(meta, separators=(",", ":")).encode()
    new_sums = (f"{hashlib.sha256(new_meta).hexdigest()}  meta.json\n"
                f"{sha}  state.bin\n").encode()
    write_archive(hostile, [("meta.json", new_meta), ("state.bin", state_forged),
                            ("SHA256SUMS", new_sums)])
    os.remove(state_orig)
    os.remove(state_forged)
    return {"state_plain_bytes": plain, "rows": rows, "state_orig_gz_bytes": orig_size,
            "state_forged_gz_bytes": size, "hash_recorded": recorded, "hash_forged": forged}


# ---------------------------------------------------------------------------------------
# 3 and 4. A restore into a fresh server, measured.

def kv_get(srv, key):
    return srv.request("GET", f"/v1/kv/{key}?raw", timeout=30)


def count_values(srv, keys, value_bytes):
    """How many of big/00000.. hold value_bytes zeros (read back one by one)."""
    zeros, n = bytes(value_bytes), 0
    c = srv.conn(60)
    try:
        for i in range(keys):
            c.request("GET", f"/v1/kv/big/{i:05d}?raw")
            r = c.getresponse()
            body = r.read()
            n += r.status == 200 and body == zeros
    finally:
        c.close()
    return n


def measure_restore(fsmhost, work, name, archive, expect_ok, keys, value_bytes):
    srv = Server(fsmhost, work, name)
    try:
        st, body = srv.request("PUT", "/v1/kv/marker", body=b"before", timeout=30)
        assert st == 200 and body.strip() == b"true", (st, body)
        time.sleep(1)  # settle after start and the first write
        with open(archive, "rb") as f:
            data = f.read()
        hwm0 = srv.kb("VmHWM")  # the start's own peak (compiling the plugins)
        # The peak so far is the start's: reset VmHWM to the current RSS (Linux's
        # clear_refs "5"), so that VmHWM after is the restore's own peak.
        hwm_reset = srv.reset_hwm()
        rss0 = srv.kb("VmRSS")
        sampler = RssSampler(srv)
        t0 = time.monotonic()
        status, answer = srv.request("PUT", "/v1/snapshot", body=data,
                                     headers={"Content-Type": "application/octet-stream"},
                                     timeout=1800)
        took = time.monotonic() - t0
        time.sleep(2)  # a restore is followed by a raft snapshot, in the background
        sampled = sampler.stop()
        rss1, hwm1 = srv.kb("VmRSS"), srv.kb("VmHWM")
        result = {
            "archive_kib": round(len(data) / 1024, 1),
            "status": status, "message": answer.decode(errors="replace").strip(),
            "seconds": round(took, 2),
            "start_peak_mib": round(mib(hwm0), 1), "hwm_reset": hwm_reset,
            "baseline_rss_mib": round(mib(rss0), 1),
            "peak_mib": round(mib(hwm1), 1), "sampled_peak_mib": round(mib(sampled), 1),
            "after_rss_mib": round(mib(rss1), 1),
            "peak_over_baseline_mib": round(mib(hwm1 - rss0), 1),
        }
        # Still serving: a write and a read.
        st, body = srv.request("PUT", "/v1/kv/after", body=b"ok", timeout=30)
        st2, body2 = kv_get(srv, "after")
        result["serves"] = st == 200 and body.strip() == b"true" and st2 == 200 and body2 == b"ok"
        # The state: unchanged after a refusal; the archive's after a restore.
        st_m, body_m = kv_get(srv, "marker")
        result["marker_kept"] = st_m == 200 and body_m == b"before"
        # `?keys` is what an operator would use, but the kv plugin's keys query can run
        # out of fuel over GBs of values; it is recorded, and the keys are counted one by
        # one (each value read back whole).
        st_k, body_k = srv.request("GET", "/v1/kv/big/?keys", timeout=60)
        result["keys_query"] = {"status": st_k,
                                "answer": (f"{len(json.loads(body_k))} keys" if st_k == 200
                                           else body_k.decode(errors="replace").strip())}
        big_keys = count_values(srv, keys, value_bytes)
        result["big_keys"] = big_keys
        if expect_ok:
            result["state_ok"] = status == 200 and big_keys == keys and st_m == 404
        else:
            result["state_ok"] = result["marker_kept"] and big_keys == 0
        result["alive"] = srv.proc.poll() is None
        return result
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fsmhost", required=True)
    ap.add_argument("--work", required=True, help="an empty directory for logs and archives")
    ap.add_argument("--keys", type=int, default=1700)
    ap.add_argument("--value-bytes", type=int, default=MIB)
    ap.add_argument("--clients", type=int, default=2)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    work = args.work
    out = {"keys": args.keys, "value_bytes": args.value_bytes,
           "machine": f"{os.cpu_count()} cores"}

    # 1. Fill, save.
    total_mib = args.keys * args.value_bytes / MIB
    log(f"filling a server with {args.keys} keys of {args.value_bytes} zero bytes "
        f"({total_mib:.0f} MiB) through POST /v1/apply/kv/set (CBOR), {args.clients} clients")
    archive = os.path.join(work, "original.snap")
    srv = Server(args.fsmhost, work, "fill")
    try:
        t0 = time.monotonic()
        fill(srv, args.keys, args.value_bytes, args.clients)
        t1 = time.monotonic()
        save_archive(srv, archive)
        t2 = time.monotonic()
        out["fill"] = {"seconds": round(t1 - t0, 1), "save_seconds": round(t2 - t1, 1),
                       "server_rss_mib": round(mib(srv.kb("VmRSS")), 1),
                       "server_peak_mib": round(mib(srv.kb("VmHWM")), 1),
                       "archive_kib": round(os.path.getsize(archive) / 1024, 1)}
    finally:
        srv.stop()
    f = out["fill"]
    print(f"fill: {args.keys} x {args.value_bytes} B ({total_mib:.0f} MiB) in {f['seconds']} s; "
          f"server RSS {f['server_rss_mib']} MiB (peak {f['server_peak_mib']}); "
          f"GET /v1/snapshot {f['save_seconds']} s, archive {f['archive_kib']} KiB", flush=True)

    # 2. Forge.
    hostile = os.path.join(work, "hostile.snap")
    t0 = time.monotonic()
    forged = make_hostile(archive, work, hostile)
    forged["seconds"] = round(time.monotonic() - t0, 1)
    forged["archive_kib"] = round(os.path.getsize(hostile) / 1024, 1)
    out["forge"] = forged
    print(f"hostile archive: {forged['archive_kib']} KiB (state.bin {forged['state_forged_gz_bytes']} B "
          f"gzip -9 of {forged['state_plain_bytes']} B, {forged['rows']} rows; "
          f"hash ...{forged['hash_recorded'][-8:]} -> ...{forged['hash_forged'][-8:]}); "
          f"original archive {out['fill']['archive_kib']} KiB", flush=True)

    # 3. The hostile restore.
    log("restoring the hostile archive into a fresh server")
    h = measure_restore(args.fsmhost, work, "hostile", hostile, False, args.keys,
                        args.value_bytes)
    out["hostile_restore"] = h
    refused = 400 <= h["status"] < 500 and "hash" in h["message"]
    h["refused_for_hash"] = refused
    h["within_goal"] = h["peak_over_baseline_mib"] < GOAL_MIB
    print(f"hostile restore: {h['status']} in {h['seconds']} s: {h['message']!r}; server RSS "
          f"baseline {h['baseline_rss_mib']} MiB -> peak {h['peak_mib']} MiB "
          f"({h['peak_over_baseline_mib']:+} MiB, goal < {GOAL_MIB}); still serves: {h['serves']}; "
          f"state unchanged: {h['state_ok']}; sampled peak {h['sampled_peak_mib']} MiB", flush=True)

    # 4. The unmodified archive, for comparison.
    log("restoring the unmodified archive into a fresh server")
    o = measure_restore(args.fsmhost, work, "original", archive, True, args.keys,
                        args.value_bytes)
    out["original_restore"] = o
    print(f"unmodified restore: {o['status']} in {o['seconds']} s; server RSS baseline "
          f"{o['baseline_rss_mib']} MiB -> peak {o['peak_mib']} MiB "
          f"({o['peak_over_baseline_mib']:+} MiB; sampled {o['sampled_peak_mib']}), "
          f"{o['after_rss_mib']} MiB after; "
          f"{o['big_keys']} values read back: {o['state_ok']}; still serves: {o['serves']}; "
          f"GET /v1/kv/big/?keys: {o['keys_query']['status']} {o['keys_query']['answer']!r}",
          flush=True)

    out["total_seconds"] = round(time.monotonic() - started, 1)
    ok = refused and h["within_goal"] and h["serves"] and h["state_ok"] and o["state_ok"]
    out["pass"] = ok
    print(f"total: {out['total_seconds']} s; "
          f"{'PASS' if ok else 'FAIL'}", flush=True)
    print(json.dumps(out, sort_keys=True), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
