#!/usr/bin/env python3
"""A bounded load test of an OpenAI-compatible server (ox serve, or a peer
such as llama-server) on 127.0.0.1 only: for each concurrency level, that
many clients each send streaming completion requests one after another
until a fixed number of requests is done or the time limit passes, then
stop. Reports requests/s, output tokens/s, time to first token and the gap
between tokens (p50 / p99), and errors.

Usage: bench/serve-load.py [--port 8080] [--levels 1,4,16,64]
                           [--requests 32] [--max-tokens 64] [--time-limit 120]
                           [--json FILE] [--label NAME]
Only the Python standard library is needed. Each request's prompt differs
(a number in it), so no prompt cache serves it whole."""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def one_request(port, index, max_tokens, deadline):
    """(ttft, gaps, tokens, ok) of one streamed completion."""
    body = json.dumps({"prompt": f"Request {index}. Write a short story about a lighthouse keeper.",
                       "max_tokens": max_tokens, "temperature": 0.8, "seed": index,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(1.0, deadline - time.time()))
    t0 = time.time()
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            r.read()
            return None, [], 0, False
        first, last, gaps, tokens, done, usage = None, None, [], 0, False, None
        buf = b""
        while not done:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1024)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                data = event[6:]
                if data == b"[DONE]":
                    done = True
                    break
                j = json.loads(data)
                if "error" in j:
                    return None, [], tokens, False
                if j.get("usage"):
                    usage = j["usage"].get("completion_tokens")
                text = j["choices"][0].get("text") if j.get("choices") else None
                if text:
                    now = time.time()
                    if first is None:
                        first = now - t0
                    else:
                        gaps.append(now - last)
                    last = now
                    tokens += 1  # chunks; the usage chunk's count when there is one
        return first, gaps, usage if usage is not None else tokens, done
    except (OSError, http.client.HTTPException):
        return None, [], 0, False
    finally:
        conn.close()


def level(port, clients, requests, max_tokens, time_limit):
    lock = threading.Lock()
    counter = [0]
    ttfts, gaps, results = [], [], {"tokens": 0, "ok": 0, "errors": 0}
    deadline = time.time() + time_limit

    def client():
        while time.time() < deadline:
            with lock:
                if counter[0] >= requests:
                    return
                counter[0] += 1
                index = counter[0]
            ttft, g, tokens, ok = one_request(port, index, max_tokens, deadline)
            with lock:
                results["tokens"] += tokens
                if ok:
                    results["ok"] += 1
                    ttfts.append(ttft)
                    gaps.extend(g)
                else:
                    results["errors"] += 1
    t0 = time.time()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    return {"clients": clients, "requests": results["ok"], "errors": results["errors"],
            "seconds": wall, "requests_per_s": results["ok"] / wall,
            "output_tokens_per_s": results["tokens"] / wall,
            "ttft_p50_s": percentile(ttfts, 50), "ttft_p99_s": percentile(ttfts, 99),
            "itl_p50_s": percentile(gaps, 50), "itl_p99_s": percentile(gaps, 99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=32, help="requests per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=120, help="seconds per level, at most")
    ap.add_argument("--json")
    ap.add_argument("--label", default="server")
    a = ap.parse_args()
    rows = []
    print(f"| {a.label} | clients | requests | errors | req/s | output tok/s | TTFT p50 | TTFT p99 "
          f"| ITL p50 | ITL p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clients in (int(x) for x in a.levels.split(",")):
        r = level(a.port, clients, max(a.requests, clients), a.max_tokens, a.time_limit)
        rows.append(r)
        print(f"| {a.label} | {clients} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.2f} "
              f"| {r['output_tokens_per_s']:.1f} | {r['ttft_p50_s'] * 1000:.0f} ms "
              f"| {r['ttft_p99_s'] * 1000:.0f} ms | {r['itl_p50_s'] * 1000:.1f} ms "
              f"| {r['itl_p99_s'] * 1000:.1f} ms |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"label": a.label, "levels": rows}, f, indent=1)
    sys.exit(1 if any(r["errors"] for r in rows) else 0)


if __name__ == "__main__":
    main()
