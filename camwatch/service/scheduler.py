"""When checks run: APScheduler 3, one interval job per enabled camera, on daemon threads.

Why it is shaped so:

- Jobs run on a bounded pool of *daemon* threads (``workers``): a camera hung
  inside a library holds at most one worker and can never keep the process
  from exiting (concurrent.futures' pool joins its threads at exit).
- ``coalesce`` and ``max_instances=1``: a slow camera never piles up runs.
  A run that finds its camera's previous one still going (a camera whose
  timeout is longer than its interval and that does not answer) is not
  started, and the executor says so to ``skipped`` instead of APScheduler
  logging "maximum number of running instances reached" every interval: the
  pipeline counts it and its camera's monitor logs it once, with the cause.
- Every camera's first check comes at the same moment, so the first frames are
  embedded as one batch; from the second on each camera keeps its own phase in
  its interval, so 1,000 cameras are not all due within the same few seconds.
- The watchdog and status jobs have a thread of their own: busy camera workers
  must not starve them.

What a camera's job does is the pipeline's (``Pipeline.run_check``).
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor, MaxInstancesReachedError, run_job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from camwatch.config import CameraConfig

#: A missed run is still started this late (seconds) rather than dropped.
MISFIRE_GRACE_S = 30
#: Seconds from start (or a camera's addition) to its first check.
FIRST_CHECK_AFTER_S = 0.5


class DaemonThreadExecutor(BaseExecutor):
    """An APScheduler executor whose threads are daemon threads, bounded in number.

    It also hands each job the time it was scheduled for (``expected``), so the
    scheduler's lag can be measured, and tells ``skipped`` (the job id) of a run
    it did not start because the job's previous run is still going.
    """

    def __init__(self, workers: int, expected: Callable[[str, float], None] | None = None,
                 skipped: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._expected = expected
        self._skipped = skipped
        self._jobs: queue.Queue[tuple[Any, list[datetime]] | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"fetch-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, run_times = item
            if self._expected is not None:
                self._expected(job.id, run_times[-1].timestamp())
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:  # reported to the scheduler like the stock executor
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        """As BaseExecutor's, but a run refused for ``max_instances`` goes to ``skipped`` rather than
        back to the scheduler as MaxInstancesReachedError, which it logs as a WARNING each time."""
        try:
            super().submit_job(job, run_times)
        except MaxInstancesReachedError:
            if self._skipped is None:
                raise
            self._skipped(job.id)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._jobs.put((job, run_times))

    def shutdown(self, wait: bool = True) -> None:
        for _ in self._threads:
            self._jobs.put(None)


class Scheduler:
    """The camera jobs and the daemon's own periodic jobs.

    ``check(camera_id, generation)`` is run for every due check;
    ``expected(camera_id, unix_time)`` learns when that run was due;
    ``skipped(camera_id)`` learns of a run not started because the camera's
    previous check is still running.
    """

    def __init__(self, workers: int, check: Callable[[str, int], None],
                 expected: Callable[[str, float], None], skipped: Callable[[str], None] | None = None) -> None:
        self._check = check
        self._expected = expected
        self._skipped = skipped
        executor = DaemonThreadExecutor(workers, self._note_expected, self._note_skipped)
        control = DaemonThreadExecutor(1)
        self._scheduler = BackgroundScheduler(executors={"default": executor, "control": control},
                                              job_defaults={"coalesce": True, "max_instances": 1,
                                                            "misfire_grace_time": MISFIRE_GRACE_S})

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing jobs; a fetch in flight is not waited for (its thread is a daemon)."""
        self._scheduler.shutdown(wait=False)

    def _note_expected(self, job_id: str, scheduled: float) -> None:
        self._expected(job_id.split(":", 1)[-1], scheduled)

    def _note_skipped(self, job_id: str) -> None:
        if self._skipped is not None:
            self._skipped(job_id.split(":", 1)[-1])

    def add_camera(self, camera: CameraConfig, generation: int) -> float:
        """Schedule a camera's checks; returns the unix time its first check is due."""
        # APScheduler adds uniform(0, jitter) to every run, counted from the previous run: the
        # mean interval grows by jitter/2 (10% jitter made 30 s checks come every 31.5 s).
        # The phases below do the spreading; a little jitter only keeps two cameras whose
        # phases collide from connecting in lockstep forever.
        jitter = min(camera.interval * 0.02, 1.0)
        # APScheduler counts each run from the previous one, so without a phase per camera
        # 1,000 cameras stayed due within the same few seconds every round (lag p99 > 1 s in
        # bench_scale). The phase is stable, from the camera's id.
        first = datetime.now().astimezone() + timedelta(seconds=FIRST_CHECK_AFTER_S)
        phase = camera.interval * (0.5 + (zlib.crc32(camera.id.encode()) % 1000) / 1000)
        # Every camera's first check is due at once after a start: with many cameras most of them
        # start later than the misfire grace. A first check is run however late (None: no grace
        # limit); only later runs, which come again, may be dropped.
        self._scheduler.add_job(self._check, "date", run_date=first, id=f"first:{camera.id}",
                                args=(camera.id, generation), replace_existing=True, misfire_grace_time=None)
        self._scheduler.add_job(self._check, "interval", seconds=camera.interval, jitter=jitter,
                                id=f"check:{camera.id}", args=(camera.id, generation),
                                start_date=first + timedelta(seconds=phase), replace_existing=True)
        return first.timestamp()

    def remove_camera(self, camera_id: str) -> None:
        for job in (f"first:{camera_id}", f"check:{camera_id}"):
            try:
                self._scheduler.remove_job(job)
            except JobLookupError:  # a disabled camera has no job; a first check already ran
                pass

    def every(self, seconds: float, job: Callable[[], object], job_id: str, now: bool = False) -> None:
        """A periodic job of the daemon's own on the control thread; ``now``: also run it at once."""
        start = {"next_run_time": datetime.now().astimezone()} if now else {}
        self._scheduler.add_job(job, "interval", seconds=seconds, id=job_id, executor="control", **start)
