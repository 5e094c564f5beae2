#!/usr/bin/env python3
"""toploc_interop.py: proofs and verdicts of the reference TOPLOC (PyPI toploc 0.1.6) on
random bf16 hidden states, for bench/toploc/interop_check.cpp to compare with dtrain, and
the reference's own speed per 32x4096 chunk.

usage:
  toploc_interop.py gen OUT.bin [--seed S]     write the interop file (format below)
  toploc_interop.py time OUT.json [--chunks N] [--reps R]
                                                time the reference, one core and all cores

Needs torch and toploc==0.1.6 (a venv, see scripts/toploc_interop.sh); dtrain itself is
not imported. The reference is only called through its public Python API.

Interop file, every integer little-endian (version 1):
  file    := "DTLOCIO1" u32 version u32 n_cases case*
  case    := str name
             u32 tokens u32 hidden u32 prefill_tokens u32 tokens_per_chunk u32 k u32 n_chunks
             u16 prover[tokens*hidden]            bf16 bit patterns, row-major
             build[n_chunks]
             u32 n_variants variant*
  build   := u8 ref_ok                            0: the reference emitted its null proof
             u32 n_idx u32 idx[n_idx]             torch's abs().topk(k) on the flat chunk
             u8 proof[2+2k]                       the reference's proof bytes
  variant := str name
             u16 verifier[tokens*hidden]          the verifier's hidden states
             u8 has_cpp u8 has_py                 which reference verifiers ran
             per chunk: u32 n_idx u32 idx[n_idx]  torch's top-k on the verifier's chunk
                        [if has_cpp] u32 exp_mismatches f64 mean f64 median   C++ path
                        [if has_py]  u32 exp_mismatches f64 mean f64 median   Python path
  str     := u32 len, UTF-8 bytes
Mean and median are 2^64 when no exponent matched (the reference's convention).
"prefill_tokens" 0 means skip_prefill. The C++ path (a tensor with skip_prefill=True)
reduces indices mod m and takes the upper median; the Python path (a list of tensors)
does neither: it uses statistics.median and evaluates at the raw index.
"""
import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import toploc

# ---- hidden states ---------------------------------------------------------------------

def gaussian(gen, tokens, hidden):
    return torch.randn(tokens, hidden, generator=gen, dtype=torch.float32).to(torch.bfloat16)


def llm_like(gen, tokens, hidden, n_outliers=6):
    """Final-norm outputs look roughly Gaussian per channel, with a handful of channels
    whose magnitude is 10-50x larger in every token (the "massive activations")."""
    x = torch.randn(tokens, hidden, generator=gen, dtype=torch.float32)
    chans = torch.randperm(hidden, generator=gen)[:n_outliers]
    scale = 10.0 + 40.0 * torch.rand(n_outliers, generator=gen)
    x[:, chans] = x[:, chans] * 0.2 + scale * torch.sign(torch.randn(n_outliers, generator=gen))
    return x.to(torch.bfloat16)


def from_bits(bits, tokens, hidden):
    """bf16 tensor from a numpy array of u16 bit patterns."""
    return torch.from_numpy(bits.astype(np.uint16).view(np.int16).copy()).view(torch.bfloat16).view(tokens, hidden)


def to_bits(x):
    """numpy u16 bit patterns of a bf16 tensor."""
    return x.contiguous().view(torch.int16).numpy().view(np.uint16)


def distinct_top(gen, tokens, hidden, per=32, count=200):
    """Background |x| < 1.9 plus, in every block of `per` rows, `count` values whose
    magnitudes are distinct bf16 patterns in [2, 512) at random positions: with count > k
    the top-k set of each chunk is unique, so torch's tie order cannot matter and the
    proofs must agree byte for byte."""
    x = (torch.randn(tokens * hidden, generator=gen) * 0.5).clamp(-1.9, 1.9).to(torch.bfloat16)
    bits = to_bits(x).copy()
    for first in range(0, tokens, per):
        n = min(per, tokens - first) * hidden
        c = min(count, n)
        pos = first * hidden + torch.randperm(n, generator=gen)[:c].numpy()
        mags = 0x4000 + torch.randperm(0x400, generator=gen)[:c].numpy()
        signs = (torch.rand(c, generator=gen) < 0.5).numpy() * 0x8000
        bits[pos] = mags | signs
    return from_bits(bits, tokens, hidden)


def channel_collisions(gen, tokens, hidden=65497, n_chans=40):
    """hidden = 65497: an outlier channel c sits at flat indices c, c + 65497, ... in a
    multi-row chunk, all equal mod 65497, so the injective modulus drops below p.
    Outlier magnitudes are distinct per (row, channel), so there are no ties."""
    x = (torch.randn(tokens, hidden, generator=gen) * 0.5).clamp(-1.9, 1.9).to(torch.bfloat16)
    bits = to_bits(x).reshape(tokens, hidden).copy()
    chans = torch.randperm(hidden, generator=gen)[:n_chans].numpy()
    mags = 0x4000 + torch.randperm(0x400, generator=gen)[: tokens * n_chans].numpy()
    bits[:, chans] = mags.reshape(tokens, n_chans)
    return from_bits(bits, tokens, hidden)


def jitter(x, factor=1.01):
    """f32(x) * f32(factor), rounded to nearest even bf16 (the V2 definition)."""
    return (x.float() * torch.tensor(factor, dtype=torch.float32)).to(torch.bfloat16)


# ---- reference calls -------------------------------------------------------------------

def ref_activations(x, prefill):
    """The reference's input: a tensor for skip_prefill, else [prefill rows, row, row...]."""
    if prefill == 0:
        return x
    return [x[:prefill]] + [x[i] for i in range(prefill, x.shape[0])]


def chunks(x, prefill, per):
    """Flat views of the chunks, as the reference cuts them."""
    out = []
    start = 0
    if prefill > 0:
        out.append(x[:prefill].reshape(-1))
        start = prefill
    for i in range(start, x.shape[0], per):
        out.append(x[i : i + per].reshape(-1))
    return out


def topk_indices(flat, k):
    try:
        return flat.abs().topk(k).indices.tolist()
    except RuntimeError:  # k > values: the reference fails the same way
        return None


def ref_verify(path, x, prefill, per, k, proofs):
    if path == "cpp":
        # The tensor + skip_prefill path runs the C++ verifier (upper median, idx mod m).
        res = toploc.verify_proofs_bytes(x, proofs, per, k, skip_prefill=True)
    else:
        # Any list goes through the Python verifier (statistics.median, raw indices).
        acts = [x[i] for i in range(x.shape[0])] if prefill == 0 else ref_activations(x, prefill)
        res = toploc.verify_proofs_bytes(acts, proofs, per, k, skip_prefill=prefill == 0)
    return [(r.exp_mismatches, float(r.mant_err_mean), float(r.mant_err_median)) for r in res]


# ---- interop file ----------------------------------------------------------------------

def w_str(f, s):
    b = s.encode()
    f.write(struct.pack("<I", len(b)))
    f.write(b)


def w_bits(f, x):
    f.write(to_bits(x).astype("<u2").tobytes())


def w_idx(f, idx):
    if idx is None:
        f.write(struct.pack("<I", 0))
        return
    f.write(struct.pack("<I", len(idx)))
    f.write(struct.pack(f"<{len(idx)}I", *idx))


def make_cases(seed):
    g = torch.Generator().manual_seed(seed)
    # (name, hidden states, prefill_tokens, tokens_per_chunk, k)
    return [
        ("gauss_decode_4x32x4096+5", gaussian(g, 4 * 32 + 5, 4096), 0, 32, 128),
        ("llm_decode_4x32x4096", llm_like(g, 4 * 32, 4096), 0, 32, 128),
        ("distinct_decode_4x32x4096", distinct_top(g, 4 * 32, 4096), 0, 32, 128),
        ("llm_prefill_5x4096+40", llm_like(g, 5 + 40, 4096), 5, 32, 128),
        ("gauss_prefill_5x16+10_k4_c3", gaussian(g, 15, 16), 5, 3, 4),
        ("partial_1x16_k8", gaussian(g, 1, 16), 0, 32, 8),
        ("short_1x16_k128", gaussian(g, 1, 16), 0, 32, 128),
        ("collide_2x4x65497", channel_collisions(g, 8), 0, 4, 128),
    ]


def gen(out_path, seed):
    torch.set_num_threads(1)
    cases = make_cases(seed)
    with open(out_path, "wb") as f:
        f.write(b"DTLOCIO1")
        f.write(struct.pack("<II", 1, len(cases)))
        for name, x, prefill, per, k in cases:
            tokens, hidden = x.shape
            flat_chunks = chunks(x, prefill, per)
            proofs = toploc.build_proofs_bytes(ref_activations(x, prefill), per, k, skip_prefill=prefill == 0)
            null = bytes(2 + 2 * k)
            if len(proofs) != len(flat_chunks):
                # On failure the reference emits 1 + ceil((len - 1) / c) null proofs, which
                # is one too many under skip_prefill; keep one per chunk.
                assert all(p == null for p in proofs), name
                print(f"{name}: the reference failed and emitted {len(proofs)} null proofs for "
                      f"{len(flat_chunks)} chunks", file=sys.stderr)
                proofs = [null] * len(flat_chunks)
            w_str(f, name)
            f.write(struct.pack("<6I", tokens, hidden, prefill, per, k, len(flat_chunks)))
            w_bits(f, x)
            for c, p in zip(flat_chunks, proofs):
                idx = topk_indices(c, k)
                ok = p != null
                if ok:
                    # Our recorded indices must be the ones the reference proved.
                    again = toploc.ProofPoly.from_points_tensor(torch.tensor(idx), c[idx]).to_bytes()
                    if again != p:
                        sys.exit(f"{name}: torch's top-k is not reproducible; cannot record indices")
                f.write(struct.pack("<B", 1 if ok else 0))
                w_idx(f, idx if ok else None)
                f.write(p)
            variants = [("exact", x), ("jitter1.01", jitter(x))]
            f.write(struct.pack("<I", len(variants)))
            for vname, v in variants:
                w_str(f, vname)
                w_bits(f, v)
                verifiable = all(p != null for p in proofs)
                # The C++ verifier divides by m: a null proof would crash it (SIGFPE).
                has_cpp = verifiable and prefill == 0
                has_py = verifiable
                cpp = ref_verify("cpp", v, prefill, per, k, proofs) if has_cpp else None
                py = ref_verify("py", v, prefill, per, k, proofs) if has_py else None
                f.write(struct.pack("<BB", has_cpp, has_py))
                for i, c in enumerate(chunks(v, prefill, per)):
                    w_idx(f, topk_indices(c, k))
                    for res in (cpp, py):
                        if res is not None:
                            f.write(struct.pack("<Idd", *res[i]))
            print(f"{name}: {tokens}x{hidden}, prefill {prefill}, chunk {per}, k {k}: {len(proofs)} proofs",
                  file=sys.stderr)


# ---- timing ----------------------------------------------------------------------------

def median_time(fn, reps):
    """Median wall and CPU (this process, all threads) seconds of `reps` calls."""
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def time_reference(n_chunks, reps):
    """Seconds per 32x4096 chunk for each way of calling the reference, on the CPUs this
    process may use (the parent sets them before the interpreter starts)."""
    k, per, hidden = 128, 32, 4096
    g = torch.Generator().manual_seed(7)
    out = {}
    for dist, make in (("llm", llm_like), ("gauss", gaussian)):
        x = make(g, n_chunks * per, hidden)
        flats = chunks(x, 0, per)
        # Warm up (first topk/from_points calls allocate).
        proofs = toploc.build_proofs_bytes(x, per, k, skip_prefill=True)
        toploc.verify_proofs_bytes(x, proofs, per, k, skip_prefill=True)
        pts = [(i, c[i]) for c in flats for i in [c.abs().topk(k).indices]]
        rows = [x[i] for i in range(x.shape[0])]

        def api_build():
            toploc.build_proofs_bytes(x, per, k, skip_prefill=True)

        def core_build():  # the shortest route through the reference: no cat, no list
            for c in flats:
                i = c.abs().topk(k).indices
                toploc.ProofPoly.from_points_tensor(i, c[i]).to_bytes()

        def topk_only():
            for c in flats:
                c.abs().topk(k)

        def interp_only():
            for i, v in pts:
                toploc.ProofPoly.from_points_tensor(i, v)

        def cpp_verify():  # all chunks in one call: the C++ path fans out over its threads
            toploc.verify_proofs_bytes(x, proofs, per, k, skip_prefill=True)

        def cpp_verify_single():  # one chunk per call, as a validator checking one proof
            for i in range(n_chunks):
                toploc.verify_proofs_bytes(flats[i].view(per, hidden), proofs[i : i + 1], per, k, skip_prefill=True)

        def py_verify():
            toploc.verify_proofs_bytes(rows, proofs, per, k, skip_prefill=True)

        for name, fn in (("build_api", api_build), ("build_core", core_build), ("topk_only", topk_only),
                         ("interpolate_only", interp_only), ("verify_cpp", cpp_verify),
                         ("verify_cpp_single", cpp_verify_single), ("verify_py", py_verify)):
            wall, cpu = median_time(fn, reps)
            out[f"{dist}/{name}"] = {"wall": wall / n_chunks, "cpu": cpu / n_chunks}
    return out


def timing_child(n_chunks, reps):
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    json.dump(time_reference(n_chunks, reps), sys.stdout)


def timing(out_path, n_chunks, reps):
    """Each configuration runs in a fresh interpreter whose CPU affinity is set before
    torch loads, with OMP_WAIT_POLICY=PASSIVE: the reference's OpenMP helpers (it asks
    for hardware_concurrency threads whatever the affinity) would otherwise spin on the
    one allowed core and inflate the one-core numbers several-fold."""
    all_cpus = sorted(os.sched_getaffinity(0))
    result = {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": len(all_cpus),
        "torch": torch.__version__,
        "toploc": toploc.__version__,
        "chunks": n_chunks,
        "reps": reps,
        "load_before": os.getloadavg(),
    }
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    for label, cpus in (("one_core", all_cpus[:1]), ("all_cores", all_cpus)):
        env["OMP_NUM_THREADS"] = str(len(cpus))
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "_time_child", str(n_chunks), str(reps)],
                               env=env, check=True, capture_output=True, text=True,
                               preexec_fn=lambda c=cpus: os.sched_setaffinity(0, c))
        result[label] = json.loads(child.stdout)
    result["load_after"] = os.getloadavg()
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"reference toploc {toploc.__version__}, torch {torch.__version__}, {result['cpu_model']}: "
          f"microseconds per 32x4096 chunk, median of {reps} runs over {n_chunks} chunks")
    print(f"{'measure':28} {'1 core cpu':>11} {'1 core wall':>11} {str(len(all_cpus)) + ' cores wall':>12}")
    for key in result["one_core"]:
        one, every = result["one_core"][key], result["all_cores"][key]
        print(f"{key:28} {one['cpu'] * 1e6:11.1f} {one['wall'] * 1e6:11.1f} {every['wall'] * 1e6:12.1f}")
    print(f"load average before {result['load_before'][0]:.2f}, after {result['load_after'][0]:.2f}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out")
    g.add_argument("--seed", type=int, default=20250410)
    t = sub.add_parser("time")
    t.add_argument("out")
    t.add_argument("--chunks", type=int, default=64)
    t.add_argument("--reps", type=int, default=5)
    c = sub.add_parser("_time_child")  # internal: one configuration, JSON on stdout
    c.add_argument("chunks", type=int)
    c.add_argument("reps", type=int)
    a = ap.parse_args()
    if toploc.__version__ != "0.1.6":
        sys.exit(f"need toploc 0.1.6, found {toploc.__version__}")
    if a.cmd == "gen":
        gen(a.out, a.seed)
    elif a.cmd == "time":
        timing(a.out, a.chunks, a.reps)
    else:
        timing_child(a.chunks, a.reps)


if __name__ == "__main__":
    main()
