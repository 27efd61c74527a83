#!/usr/bin/env python3
"""Markdown tables for scripts/gpu-check.sh's summary, from its results.json:
the tuning (ox tune --json), matmul with the portable kernels against the
vendor library per shape (two ox bench --json runs), the other ops, and the
synthetic models (ox bench-model --json). Usage: gpu-check-report.py RESULTS.json

results.json (written by gpu-check.sh; any part may be null when its step did
not run or failed):
  {"device": "cuda:0", "tune": {...}, "bench_kernels": {...}, "bench_vendor": {...},
   "vendor": {"library": "cuBLAS", "used": true, "detail": "..."},
   "models": [{"name": "llama-852m", "type": "q4_0", "run": "kernels"|"vendor",
               "result": {...}}]}
"""
import json
import sys

# The vendor BLAS serves matmul when both operands have one of these types
# (src/backends/cuda/cuda_blas.c, hip_blas.c); the rest runs the kernels.
VENDOR_TYPES = {"f32", "f16", "bf16"}


def seconds(t):
    if not t:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def share(row):
    if row.get("percent_of_limit") is None:
        return "-"
    limit = "bw" if row.get("limit") == "bandwidth" else "fma"
    return f"{row['percent_of_limit']:.1f}% of {limit}"


def rate(row):
    if row.get("error"):
        return "ERROR: " + row["error"].splitlines()[0][:80]
    if row.get("gflops") is not None:
        return f"{row['gflops']:.1f} GFLOP/s"
    if row.get("gbps") is not None:
        return f"{row['gbps']:.1f} GB/s"
    return "-"


def device_entry(doc):
    devices = (doc or {}).get("devices") or []
    return devices[0] if devices else None


def missing(what, doc):
    """A line for a part that is absent; None when it is there."""
    if doc is None:
        return f"_{what}: not measured (the step did not run or failed; see the step table and log.txt)._"
    return None


def tune_section(doc):
    print("## Tuning (`ox tune --json`)\n")
    line = missing("tuning", doc)
    if line:
        print(line + "\n")
        return
    for dev in doc.get("devices", []):
        if dev.get("error") or dev.get("skipped"):
            print(f"- {dev.get('id')}: {dev.get('error') or dev.get('skipped')}")
        results = dev.get("results", [])
        improved = sum(1 for r in results if (r.get("speedup") or 0) > 1)
        print(f"{dev.get('id')} ({dev.get('name')}): {len(results)} classes, {improved} faster "
              "than the defaults; '+': the budget ended the search. The winners are used by "
              "every later step.\n")
        print("| op | class | shape | default | best | speedup | tried/rejected/failed | best parameters |")
        print("|---|---|---|---:|---:|---:|---|---|")
        for r in results:
            speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
            stopped = "+" if r.get("budget_ended_search") else ""
            print(f"| {r['op']} | {r['class']} | {r['shape']} | {seconds(r.get('default_seconds'))} "
                  f"| {seconds(r.get('best_seconds'))} | {speedup} "
                  f"| {r['tried']}/{r['rejected']}/{r['failed']}{stopped} "
                  f"| `{r.get('best') or '(none ran)'}` |")
    print()


def limits_line(dev):
    limits = dev.get("limits") if dev else None
    if not limits:
        return "limits: not measured"
    f16 = f", F16 FMA {limits['f16_gflops']:.0f} GFLOP/s" if limits.get("f16_gflops") else ""
    return (f"limits (`ox bench`): bandwidth {limits['bandwidth_gbps']:.0f} GB/s (copy "
            f"{limits['copy_gbps']:.0f}, triad {limits['triad_gbps']:.0f}), F32 FMA "
            f"{limits['f32_gflops']:.0f} GFLOP/s{f16}")


def matmul_section(results):
    vendor = results.get("vendor") or {}
    library = vendor.get("library") or "vendor library"
    kernels, native = device_entry(results.get("bench_kernels")), device_entry(results.get("bench_vendor"))
    print(f"## Matmul: portable kernels against {library}\n")
    line = missing("the portable-kernel run", kernels)
    if line:
        print(line + "\n")
        return
    print(f"{kernels['id']} ({kernels['name']}), {limits_line(kernels)}.")
    if vendor.get("used"):
        print(f"The second run (OX_NATIVE_LIBS unset) used {library} for matmul; it takes "
              "operands of one type among F32, F16 and BF16, the other rows ran the portable "
              "kernels again ('path').")
        vendor_note = None
    else:
        vendor_note = vendor.get("detail") or "no vendor library"
        print(f"The second run (OX_NATIVE_LIBS unset): {vendor_note}.")
    print("Percentages are of the limit that bounds the shape: bandwidth (bw) or F32 FMA peak "
          "(fma).\n")
    others = {}
    for r in (native or {}).get("results", []):
        others[(r["op"], r["dtype"], r["shape"])] = r
    print(f"| dtype | shape | portable | of limit | {library} | of limit | path | {library} / portable |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for r in kernels.get("results", []):
        if r["op"] != "matmul":
            continue
        a, _, b = r["dtype"].partition("*")
        served = a == b and a in VENDOR_TYPES
        if vendor_note:
            cells = [vendor_note, "", "portable kernel", "-"]
        else:
            o = others.get((r["op"], r["dtype"], r["shape"]))
            if o is None:
                cells = ["not measured", "", "", "-"]
            else:
                ratio = (f"{o['gflops'] / r['gflops']:.2f}x" if o.get("gflops") and r.get("gflops")
                         else "-")
                cells = [rate(o), share(o), library if served else "portable kernel", ratio]
        print(f"| {r['dtype']} | {r['shape']} | {rate(r)} | {share(r)} | " + " | ".join(cells) + " |")
    print()
    print("Other ops (portable kernels, OX_NATIVE_LIBS=0):\n")
    print("| op | dtype | shape | rate | of limit |")
    print("|---|---|---|---:|---:|")
    for r in kernels.get("results", []):
        if r["op"] != "matmul":
            print(f"| {r['op']} | {r['dtype']} | {r['shape']} | {rate(r)} | {share(r)} |")
    print()


def models_section(results):
    print("## Synthetic models (`ox bench-model --json`)\n")
    models = results.get("models") or []
    if not models:
        print("_No model was benchmarked (see the step table)._\n")
        return
    library = (results.get("vendor") or {}).get("library") or "vendor library"
    print("Random weights from `make_model` (bench/README.md): llama.cpp's layout, so the speed "
          "is a real model's of that shape. pp: one batch of P prompt tokens; tg: G tokens one "
          "at a time. Of roofline: pp of the F32 FMA peak, tg of the bandwidth (the weight "
          "bytes and the KV cache a step reads). Launches and host waits are per token.\n")
    print("| model | weights | run | test | tokens/s | of roofline | launches/token | syncs/token | J/token |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    notes, limits = [], []
    for m in models:
        run = "portable kernels" if m["run"] == "kernels" else f"default ({library} where it applies)"
        doc = m.get("result")
        if not doc:
            print(f"| {m['name']} | {m['type']} | {run} | - | not measured | | | | |")
            continue
        limits.append(f"{doc.get('bandwidth_gbps', 0):.0f} GB/s, {doc.get('f32_gflops', 0):.0f} GFLOP/s")
        for r in doc.get("results", []):
            joules = r.get("joules_per_token")
            if joules is None:
                joules_text = "n/a"
                if r.get("energy_sensor_missing") and r["energy_sensor_missing"] not in notes:
                    notes.append(r["energy_sensor_missing"])
            else:
                joules_text = f"{joules:.4g}"
            print(f"| {m['name']} | {m['type']} | {run} | {r['test']} "
                  f"| {r['tokens_per_second']:.1f} ± {r.get('stddev', 0):.1f} | {share(r)} "
                  f"| {r.get('launches_per_token', 0):.1f} | {r.get('syncs_per_token', 0):.2f} "
                  f"| {joules_text} |")
    print()
    if limits:
        print(f"Limits the percentages use (bandwidth, F32 FMA): {limits[0]}.")
    sensors = {m["result"].get("energy_sensor") for m in models if m.get("result")}
    sensors.discard(None)
    if sensors:
        print("J/token from " + ", ".join(sorted(sensors)) + " (the whole device).")
    for note in notes:
        print(f"J/token not measured: {note}")
    print()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gpu-check-report.py RESULTS.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        results = json.load(f)
    tune_section(results.get("tune"))
    matmul_section(results)
    models_section(results)


if __name__ == "__main__":
    main()
