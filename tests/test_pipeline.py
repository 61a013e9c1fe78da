"""The pipeline carries out every action the monitor asked for, even when one fails.

The monitor has already moved on when its actions run; an action the store
refuses must not take the ones after it down with it (an event lost behind a
calibration sample on a full disk). tests/test_disk_full.py fills a real
filesystem under a real daemon; here the store's refusal is a stand-in (a
ReferenceStore whose calibration write raises the StoreError a full disk
gives), so the rule is checked on its own in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from servers import camera_config

from camwatch.config import Settings
from camwatch.core.errors import StoreError
from camwatch.core.monitor import Emit, Monitor, RecordCalibration
from camwatch.service.metrics import Metrics
from camwatch.service.pipeline import CameraRuntime, Pipeline
from camwatch.store.events import Event
from camwatch.store.references import ReferenceStore


class FullDiskStore(ReferenceStore):
    def add_calibration_sample(self, *args: object, **kwargs: object) -> None:
        raise StoreError("camwatch.db: database or disk is full")


def test_an_action_the_store_refuses_does_not_cost_the_event_after_it(tmp_path: Path, caplog) -> None:
    store = FullDiskStore(tmp_path)
    published: list[Event] = []
    embedder = SimpleNamespace(spec=SimpleNamespace(identity="m"))  # only its identity is read here
    cam = camera_config("demo:lobby", id="lobby")
    metrics = Metrics(process=False)
    metrics.camera_added("lobby")
    rt = CameraRuntime(camera=cam, monitor=Monitor("lobby"))
    pipe = Pipeline(Settings(), embedder, store, metrics, {"lobby": rt}, published.append)  # type: ignore[arg-type]
    try:
        pipe.carry_out(rt, [RecordCalibration(similarity=0.9, structure=0.1),
                            Emit(type="drift_cleared", message="view back to normal")])
    finally:
        store.close()
    assert [e.type for e in published] == ["drift_cleared"]
    assert "RecordCalibration not carried out" in caplog.text and "disk is full" in caplog.text
