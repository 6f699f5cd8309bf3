"""The orchestrator: config, workload, pipeline, replay, reports and the CLI."""
