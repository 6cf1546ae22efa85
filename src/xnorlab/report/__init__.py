"""The report stage: MLflow runs of a suite -> paper-style tables (Markdown, LaTeX, CSV), plots
and one MLflow report run. Entry point: `pipelines/report.py`; library: `build.make_report`."""
