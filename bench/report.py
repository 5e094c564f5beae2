#!/usr/bin/env python3
"""Runs dtrain's benchmark binaries and prints Markdown tables of GB/s with each kernel's
ratio to the baseline measured in the same run (memcpy for codecs, triad for optimizers).

usage: python3 bench/report.py BUILD_DIR [--filter REGEX] [--min-time S] [--out FILE]
"""
import argparse, json, os, platform, re, subprocess, sys, tempfile


def run(binary, filt, min_time):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, f"--benchmark_min_time={min_time}", f"--benchmark_out={out}",
           "--benchmark_out_format=json", "--benchmark_format=console"]
    if filt:
        cmd.append(f"--benchmark_filter={filt}")
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    return data


def split(name):
    # "BM_encode/fp16/1048576/real_time/threads:2"
    parts = name.split("/")
    threads = 1
    for p in parts:
        m = re.match(r"threads:(\d+)", p)
        if m:
            threads = int(m.group(1))
    parts = [p for p in parts if not p.startswith("threads:") and p != "real_time"]
    return parts, threads


def gbps(b):
    return b.get("bytes_per_second", 0.0) / 1e9


def codec_table(data):
    base, rows = {}, {}
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        parts, threads = split(b["name"])
        n = int(parts[-1])
        if parts[0] == "BM_memcpy":
            base[(n, threads)] = gbps(b)
            continue
        op, spec = parts[0][3:], "/".join(parts[1:-1])
        rows.setdefault((spec, n, threads), {})[op] = (gbps(b), b.get("ratio", 0.0))
    lines = ["| codec | n | threads | size ratio | encode GB/s | encode / memcpy | decode GB/s | decode / memcpy | memcpy GB/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (spec, n, threads), ops in rows.items():
        m = base.get((n, threads), 0.0)
        enc, ratio = ops.get("encode", (0.0, 0.0))
        dec, _ = ops.get("decode", (0.0, 0.0))
        lines.append(f"| `{spec}` | {n >> 20}M | {threads} | {ratio:.1f}x | {enc:.2f} | {100*enc/m if m else 0:.0f}% | "
                     f"{dec:.2f} | {100*dec/m if m else 0:.0f}% | {m:.2f} |")
    return "\n".join(lines)


def optim_table(data):
    base, rows = {}, []
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        parts, threads = split(b["name"])
        n = int(parts[-1])
        if "triad" in parts[0]:
            base[(n, threads)] = gbps(b)
        elif "memcpy" not in parts[0]:
            rows.append(("/".join(parts[:-1]), n, threads, gbps(b)))
    lines = ["| kernel | n | threads | GB/s | / triad | triad GB/s |", "|---|---|---|---|---|---|"]
    for name, n, threads, g in rows:
        t = base.get((n, threads), 0.0)
        lines.append(f"| `{name}` | {n >> 20}M | {threads} | {g:.2f} | {100*g/t if t else 0:.0f}% | {t:.2f} |")
    return "\n".join(lines)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--filter", default="")
    ap.add_argument("--min-time", default="0.3")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    out = [f"Machine: {machine()}", ""]
    codec_bin = os.path.join(a.build, "bench", "dtrain_codec_bench")
    optim_bin = os.path.join(a.build, "bench", "dtrain_optim_bench")
    if os.path.exists(codec_bin):
        out += ["### Codecs (input GB/s; ratio to memcpy of the same size in the same run)", "",
                codec_table(run(codec_bin, a.filter, a.min_time)), ""]
    if os.path.exists(optim_bin):
        out += ["### Outer optimizer step (GB/s of bytes the kernel must move; ratio to triad)", "",
                optim_table(run(optim_bin, a.filter, a.min_time)), ""]
    text = "\n".join(out)
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
