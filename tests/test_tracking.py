"""The experiment's saved runs view (MLflow 3.17's envelope, rewritten only on change) and the
UI links built from it."""

from __future__ import annotations

import json

from xnorlab import tracking


def _view(client, exp_id) -> dict:
    return json.loads(client.get_experiment(exp_id).tags[tracking.VIEW_TAG])


def test_saved_view_is_an_envelope_kept_until_it_changes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = {"uri": uri, "experiment": "x", "artifact_root": str(tmp_path / "a")}
    client, exp_id, _ = tracking.open_experiment(cfg)
    view = _view(client, exp_id)
    assert view["name"] == tracking.VIEW_NAME
    assert json.loads(view["state"])["selectedColumns"] == tracking.VIEW_COLUMNS
    assert isinstance(view["createdAt"], int) and view["updatedAt"] == view["createdAt"]
    tracking.open_experiment(cfg)  # unchanged view: not rewritten (same timestamps)
    assert _view(client, exp_id) == view
    # a view saved before the envelope (bare state) is replaced by the envelope
    client.set_experiment_tag(exp_id, tracking.VIEW_TAG, tracking.runs_view_state())
    tracking.mark_training_experiment(client, exp_id)
    assert _view(client, exp_id)["name"] == tracking.VIEW_NAME


def test_ui_link_opens_the_runs_in_the_view_or_the_list(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = "http://127.0.0.1:5000/"
    assert tracking.ui_link(uri, base) == (
        "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning")
    _, exp_id, _ = tracking.open_experiment(
        {"uri": uri, "experiment": "xnorlab", "artifact_root": str(tmp_path / "a")})
    assert tracking.ui_link(uri, base) == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={tracking.VIEW_KEY}")
