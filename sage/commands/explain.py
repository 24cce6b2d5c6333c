"""``sage-explain`` / ``python -m sage.commands.explain`` / ``python explain.py``: explain a
checkpoint (``checkpoint=<ckpt | MLflow run id> [cam=[...]]``) or any backbone on a folder of
images (``model=<backbone> model.weights=<file> images=<folder | glob> [masks=<folder>]``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sage.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Explain one checkpoint; print a methods × headline-metrics table and where the run is
    (every number is in MLflow and the output directory)."""
    import mlflow  # imported here: --help and config errors answer at once

    from sage.explain import run
    from sage.explain.sinks.scalars import closing_table
    from sage.tracking.console import where_to_look

    result = run(cfg)
    run_id = result.get("run_id")
    if cfg.get("mode", "maps") != "maps" or not isinstance(run_id, str):
        for key, value in result.items():  # mode=neurons: a few summary numbers
            print(f"{key}: {value}")
        return
    print(closing_table(result))
    if "explain/acc" in result:
        print(f"accuracy: {result['explain/acc']:.3f}")
    uri = cfg.logger.tracking_uri
    experiment = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    print(where_to_look(uri, experiment, run_id, cfg.paths.output_dir), flush=True)


if __name__ == "__main__":
    main()
