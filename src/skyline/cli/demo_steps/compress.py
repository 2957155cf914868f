"""Demo step: compress the demo digits CNN and the MiniLM sentence encoder, Pareto plots in the report."""

from __future__ import annotations

from typing import Any

from skyline.cli.demo import DemoContext, StepReport


def _line(report: Any, name: str) -> str:
    base, m = report.measurements["fp32"], report.measurements[name]
    return (
        f"| {report.model} | {name} | {m.size_bytes / 1e6:.3f} MB ({base.size_bytes / m.size_bytes:.1f}× smaller) | "
        f"{m.latency_p50_ms:.3f} ms ({base.latency_p50_ms / m.latency_p50_ms:.1f}× faster) | "
        f"{m.metric:.2f} ({m.metric_delta:+.2f}) |"
    )


def run(ctx: DemoContext) -> StepReport:
    from skyline.compression.measure import MeasureConfig
    from skyline.compression.pipeline import compress
    from skyline.compression.recipe import load_recipe
    from skyline.compression.subjects import resolve_subject

    measure = MeasureConfig(
        latency_runs=40 if ctx.quick else 200,
        rounds=4 if ctx.quick else 5,
        batch_sizes=(1, 32) if ctx.quick else (1, 8, 32, 128),
        throughput_runs=4 if ctx.quick else 10,
    )
    cnn = resolve_subject("digits-cnn", quick=ctx.quick)
    cnn_recipes = ["int8", "prune50-int8"] + ([] if ctx.quick else ["distill-int8"])
    cnn_report = compress(
        cnn.module, cnn.task, [load_recipe(r) for r in cnn_recipes], ctx.out_dir / "digits-cnn",
        model_name=cnn.name, measure=measure,
    )  # fmt: skip
    minilm = resolve_subject("minilm")
    minilm_report = compress(
        minilm.module, minilm.task, [load_recipe("int8")], ctx.out_dir / "minilm",
        model_name=minilm.name, measure=measure,
    )  # fmt: skip
    cosine = minilm_report.notes["int8"].get("mean_cosine_to_fp32", float("nan"))
    rows = [_line(cnn_report, n) for n in cnn_recipes] + [_line(minilm_report, "int8")]
    summary = "\n".join(
        [
            "Each model is compressed by built-in recipes and every variant is measured in one run, "
            "interleaved, at batch 1 with 1 thread, against the PyTorch fp32 original "
            f"(digits: test accuracy %; MiniLM: leave-one-out topic accuracy on 72 labelled sentences, "
            f"mean cosine to fp32 embeddings **{cosine:.4f}**). The machine is shared, so latencies are noisy.",
            "",
            "| model | variant | size | latency p50 | metric (Δ) |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    metrics: dict[str, Any] = {
        "digits_cnn": cnn_report.as_json()["variants"],
        "minilm": minilm_report.as_json()["variants"],
        "minilm_int8_mean_cosine": cosine,
    }
    return StepReport(
        title="Compression: pruning, distillation, int8 (digits CNN and MiniLM)",
        summary=summary,
        figures=(ctx.out_dir / "digits-cnn" / "pareto.png", ctx.out_dir / "minilm" / "pareto.png"),
        metrics=metrics,
    )
