"""One module per capability's demo step; each defines ``run(ctx: DemoContext) -> StepReport``."""
