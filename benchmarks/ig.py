"""Integrated Gradients speed and memory on the paper's model at a realistic size.

    .venv/bin/python benchmarks/ig.py            # default run: a couple of minutes on 2 CPU cores
    .venv/bin/python benchmarks/ig.py --samples 64 --repeats 3

Measured side by side in one run, on T-EMO with F=25, Q=31, R=54 (the paper's anger model),
P=10 frames and 468 landmarks (untrained weights: speed does not depend on them):

(a) our generic engine's IG throughput (interpolated samples per second) against the bare batched
    gradient of the same model at the same batch size, the ceiling (target: at least 0.9 of it);
    the structured engine (the default for emolib's models) is printed beside it: it does not
    push every interpolated sample through the model, so it can pass the ceiling;
(b) both engines against a straightforward per-sample implementation in the style of the
    TensorFlow IG tutorial (one sample at a time, alphas in batches of 32; target: ours at least
    10 times faster);
(c) peak memory at m = 50 and m = 500, each in a fresh subprocess (peak RSS from
    resource.getrusage; on a GPU also TensorFlow's peak device memory): ours stays at one chunk,
    an unchunked run grows with m.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import emolib  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

FRAMES, LANDMARKS = 10, 468
FILTERS, LSTM_UNITS, FC_UNITS = 25, 31, 54


def build_paper_model():
    """T-EMO at the paper's anger size (Table 1: F=25, Q=31, R=54) unless the command line says
    otherwise, from stage 02's builder; untrained weights (speed does not depend on them)."""
    from emolib.models import build_model

    return build_model("t-emo", FRAMES, LANDMARKS, FILTERS, LSTM_UNITS, FC_UNITS, seed=0)


def make_data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FRAMES, 2, LANDMARKS, 1)).astype(np.float32)
    base = rng.normal(size=(FRAMES, 2, LANDMARKS, 1)).astype(np.float32)
    return x, base


def bare_gradient_fn(model, chunk: int):
    """The ceiling: the gradient of the target probability for a fixed batch, nothing else.

    It returns only the gradient's sum, so that the ceiling pays no copy of the gradient to the
    host (our IG pays for copying back its per-sample sums)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((chunk, FRAMES, 2, LANDMARKS, 1), tf.float32)])
    def grad(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            prob = model(batch, training=False)[:, 1]
        return tf.reduce_sum(tape.gradient(prob, batch))

    return grad


def tutorial_ig(model, baseline, image, m_steps: int = 50, batch_size: int = 32):
    """Per-sample IG written as in the TensorFlow Integrated Gradients tutorial
    (tensorflow.org/tutorials/interpretability/integrated_gradients): alphas in batches of 32,
    a tf.function per batch, the trapezoid average of the gradients."""
    import tensorflow as tf

    alphas = tf.linspace(start=0.0, stop=1.0, num=m_steps + 1)
    gradient_batches = []
    for alpha in tf.range(0, len(alphas), batch_size):
        from_ = alpha
        to = tf.minimum(from_ + batch_size, len(alphas))
        alpha_batch = alphas[from_:to]
        gradient_batches.append(_tutorial_one_batch(model, baseline, image, alpha_batch))
    total_gradients = tf.concat(gradient_batches, axis=0)
    grads = (total_gradients[:-1] + total_gradients[1:]) / tf.constant(2.0)
    avg_gradients = tf.math.reduce_mean(grads, axis=0)
    return (image - baseline) * avg_gradients


_TUTORIAL_FN = {}


def _tutorial_one_batch(model, baseline, image, alpha_batch):
    import tensorflow as tf

    if id(model) not in _TUTORIAL_FN:
        @tf.function
        def one_batch(baseline, image, alpha_batch):
            alphas_x = alpha_batch[:, tf.newaxis, tf.newaxis, tf.newaxis, tf.newaxis]
            interpolated = baseline[tf.newaxis] + alphas_x * (image - baseline)[tf.newaxis]
            with tf.GradientTape() as tape:
                tape.watch(interpolated)
                probs = model(interpolated, training=False)[:, 1]
            return tape.gradient(probs, interpolated)

        _TUTORIAL_FN[id(model)] = one_batch
    return _TUTORIAL_FN[id(model)](baseline, image, alpha_batch)


@contextlib.contextmanager
def ig_backend(name: str):
    """Run the structured engine with its binning in ``name`` (numba / tensorflow)."""
    old = os.environ.get("EMOLIB_IG_BACKEND")
    os.environ["EMOLIB_IG_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["EMOLIB_IG_BACKEND"]
        else:
            os.environ["EMOLIB_IG_BACKEND"] = old


def best_times(jobs: dict, repeats: int) -> dict:
    """Best wall time of each job over ``repeats`` rounds, after one warm-up round.

    The jobs run interleaved, round after round, so that a burst of load from other processes
    on a shared machine hits all of them alike; the best round is the least disturbed one.
    """
    for fn in jobs.values():
        fn()
    best = {name: float("inf") for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def speed(args) -> dict:
    import numpy as np
    import tensorflow as tf

    from emolib.ig import integrated_gradients, structured_backend

    model = build_paper_model()
    chunk, m = args.batch_size, args.steps
    # At most `chunks` chunks of work, padding below one sample's m rows.
    n = max(1, (args.chunks * chunk) // m)
    x, base = make_data(n)
    rows = n * m
    n_chunks = -(-rows // chunk)

    grad = bare_gradient_fn(model, chunk)
    batch = tf.constant(make_data(chunk, seed=1)[0])
    n_tut = max(1, min(n, args.tutorial_samples))
    x_t, base_t = tf.constant(x[:n_tut]), tf.constant(base)
    backend = structured_backend()
    generic = integrated_gradients(model, x, base, steps=m, batch_size=chunk, engine="generic").attributions
    structured = integrated_gradients(model, x, base, steps=m, batch_size=chunk, engine="structured").attributions
    with ig_backend("tensorflow"):
        structured_tf = integrated_gradients(model, x, base, steps=m, batch_size=chunk,
                                             engine="structured").attributions
    scale = np.abs(generic).max()
    agreement = float(np.abs(generic - structured).max() / scale)
    agreement_tf = float(np.abs(generic - structured_tf).max() / scale)

    def structured_with_tf_ops():
        with ig_backend("tensorflow"):
            integrated_gradients(model, x, base, steps=m, batch_size=chunk, engine="structured")

    best = best_times({
        "bare": lambda: [grad(batch).numpy() for _ in range(n_chunks)],
        "generic": lambda: integrated_gradients(model, x, base, steps=m, batch_size=chunk, engine="generic"),
        "structured": lambda: integrated_gradients(model, x, base, steps=m, batch_size=chunk, engine="structured"),
        "structured_tf": structured_with_tf_ops,
        "tutorial": lambda: [tutorial_ig(model, base_t, x_t[i], m_steps=m).numpy() for i in range(n_tut)],
    }, args.repeats)
    return {
        "samples": n, "steps": m, "chunk": chunk, "interpolated_rows": rows, "chunks": n_chunks,
        "bare_rows_per_s": n_chunks * chunk / best["bare"],
        "generic_rows_per_s": rows / best["generic"],
        "structured_rows_per_s": rows / best["structured"],
        "structured_backend": backend,
        "structured_tf_rows_per_s": rows / best["structured_tf"],
        "tutorial_rows_per_s": n_tut * (m + 1) / best["tutorial"],  # the tutorial evaluates m + 1 alphas
        "generic_samples_per_s": n / best["generic"],
        "structured_samples_per_s": n / best["structured"],
        "tutorial_samples_per_s": n_tut / best["tutorial"],
        "engines_max_relative_difference": agreement,
        "engines_max_relative_difference_tf": agreement_tf,
        "seconds": best,
    }


def _rss_mib(field: str) -> float | None:
    """VmRSS (current) or VmHWM (peak) of this process, in MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Start a fresh peak-RSS measurement (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(mode: str, steps: int, samples: int, chunk: int) -> None:
    """Run one IG job and print its peak memory as JSON (run in a fresh process).

    The peak is measured from after the model is built and the data made: TensorFlow's own
    start-up (libraries, thread pools) would otherwise set a high-water mark above the job's.
    """
    import resource

    import tensorflow as tf

    from emolib.ig import integrated_gradients

    model = build_paper_model()
    x, base = make_data(samples)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    fresh_peak = _reset_peak_rss()
    before = _rss_mib("VmRSS")
    start = time.perf_counter()
    if mode == "generic":
        integrated_gradients(model, x, base, steps=steps, batch_size=chunk, engine="generic")
    elif mode == "structured":
        integrated_gradients(model, x, base, steps=steps, batch_size=chunk, engine="structured")
    elif mode == "unchunked":
        integrated_gradients(model, x, base, steps=steps, batch_size=None, engine="generic")
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - start
    peak = _rss_mib("VmHWM") if fresh_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"mode": mode, "steps": steps, "samples": samples, "seconds": round(seconds, 2),
           "rss_before_mib": before, "peak_rss_mib": peak,
           "job_peak_mib": None if before is None or peak is None else peak - before}
    if gpu:
        out["peak_gpu_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    print("RESULT " + json.dumps(out))


def memory(args) -> list[dict]:
    jobs = [("generic", 50, args.memory_samples), ("generic", 500, args.memory_samples),
            ("structured", 50, args.memory_samples), ("structured", 500, args.memory_samples),
            ("unchunked", 50, args.unchunked_samples), ("unchunked", 500, args.unchunked_samples)]
    results = []
    for mode, steps, samples in jobs:
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", mode, str(steps), str(samples), str(args.batch_size),
             "--threads", str(args.threads), "--size", str(FILTERS), str(LSTM_UNITS), str(FC_UNITS)],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            results.append({"mode": mode, "steps": steps, "samples": samples,
                            "error": (proc.stderr or proc.stdout)[-400:]})
        else:
            results.append(json.loads(line[0][len("RESULT "):]))
    return results


def set_threads(threads: int) -> None:
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv=None) -> int:
    global FILTERS, LSTM_UNITS, FC_UNITS  # --size replaces the paper's sizes for this run
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="m for the speed runs")
    parser.add_argument("--batch-size", type=int, default=512, help="interpolated samples per chunk")
    parser.add_argument("--chunks", type=int, default=4, help="chunks of work in the speed runs")
    parser.add_argument("--tutorial-samples", type=int, default=4, help="samples the per-sample version runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (the best of each kept)")
    parser.add_argument("--memory-samples", type=int, default=16, help="samples in the chunked memory runs")
    parser.add_argument("--unchunked-samples", type=int, default=2, help="samples in the unchunked memory runs")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: default)")
    parser.add_argument("--size", nargs=3, type=int, metavar=("F", "Q", "R"),
                        help=f"filters, LSTM units, FC1 units (default: the paper's {FILTERS} {LSTM_UNITS} {FC_UNITS})")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--memory-child", nargs=4, metavar=("MODE", "STEPS", "SAMPLES", "CHUNK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size:
        FILTERS, LSTM_UNITS, FC_UNITS = args.size
    set_threads(args.threads)
    if args.memory_child:
        mode, steps, samples, chunk = args.memory_child
        memory_child(mode, int(steps), int(samples), int(chunk))
        return 0

    import tensorflow as tf

    device = "GPU: " + tf.config.list_physical_devices("GPU")[0].name if tf.config.list_physical_devices("GPU") \
        else f"CPU ({os.cpu_count()} cores)"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"IG benchmark: T-EMO F={FILTERS} Q={LSTM_UNITS} R={FC_UNITS}, P={FRAMES}, L={LANDMARKS}; {device}{load}")
    s = speed(args)
    print(f"\n(a)/(b) speed, best of {args.repeats} interleaved rounds: {s['samples']} samples x m={s['steps']}"
          f" = {s['interpolated_rows']} interpolated samples, {s['chunks']} chunks of {s['chunk']}")
    tut = s["tutorial_rows_per_s"]
    print(f"  bare batched gradient (ceiling) {s['bare_rows_per_s']:10.1f} interpolated samples/s")
    print(f"  emolib IG, generic engine       {s['generic_rows_per_s']:10.1f} interpolated samples/s"
          f"   = {s['generic_rows_per_s'] / s['bare_rows_per_s']:.3f} of the ceiling (target >= 0.9)"
          f", {s['generic_rows_per_s'] / tut:.1f}x the per-sample version")
    print(f"  emolib IG, structured engine    {s['structured_rows_per_s']:10.1f} interpolated samples/s"
          f"   = {s['structured_rows_per_s'] / s['bare_rows_per_s']:.2f}x the ceiling"
          f", {s['structured_rows_per_s'] / tut:.1f}x the per-sample version (target >= 10x)"
          f"  [binning: {s['structured_backend']}]")
    print(f"  ... its binning in TF ops       {s['structured_tf_rows_per_s']:10.1f} interpolated samples/s"
          f"   = {s['structured_tf_rows_per_s'] / s['bare_rows_per_s']:.2f}x the ceiling"
          f", {s['structured_tf_rows_per_s'] / tut:.1f}x the per-sample version (the GPU path)")
    print(f"  per-sample, TF tutorial style   {tut:10.1f} interpolated samples/s")
    print(f"  the engines' attributions differ by at most {s['engines_max_relative_difference']:.1e}"
          f" ({s['structured_backend']} binning) and {s['engines_max_relative_difference_tf']:.1e} (TF ops)"
          " of the largest\n  (float32: where a ReLU unit is within rounding of zero at an alpha, the engines may"
          " take opposite sides)")
    out = {"device": device, "speed": s}
    if not args.skip_memory:
        mem = memory(args)
        print(f"\n(c) peak memory, each run in a fresh process (chunk {args.batch_size}):")
        for r in mem:
            if "error" in r:
                print(f"  {r['mode']:10s} m={r['steps']:<4d} N={r['samples']:<3d} FAILED: {r['error']}")
                continue
            gpu = f"  peak GPU {r['peak_gpu_mib']:8.0f} MiB" if "peak_gpu_mib" in r else ""
            print(f"  {r['mode']:10s} m={r['steps']:<4d} N={r['samples']:<3d} rows={r['steps'] * r['samples']:<6d}"
                  f" job's peak RSS +{r['job_peak_mib']:6.0f} MiB (process peak {r['peak_rss_mib']:6.0f} MiB)"
                  f"{gpu}  {r['seconds']:6.1f} s")
        out["memory"] = mem
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
