"""The run's report: ``report/index.html`` and its pictures, for people.

One static page per run directory: no server, no JavaScript, no external URLs and only
relative links, so the folder opens from disk offline and can be copied elsewhere with
the run. It shows what the run holds and says what it does not (a run stopped with
``until: cams``, no plain-CAM baseline, no fully supervised model, a stage not finished):

1. header: run name, dates, data and model summary, links to config.yaml / metrics.json;
2. metrics table per pipeline phase (mIoU, threshold, FP/FN, images), the weak /
   fully supervised ratio, and the time each phase took (manifest.json); the paper's
   Table 2: CAM, random walk and pseudo-label mIoU of each CAM branch (plain CAM and
   Puzzle-CAM, names from :mod:`puzzlecam.pipeline.branches`);
3. sample images: image, ground truth, CAM and random-walk heat maps, labels, predictions;
4. background-threshold curves (eval/*.json sweeps);
5. per-class IoU on val;
6. training-loss curves of every trained model (metrics.jsonl);

and beside it ``explore.html``, the threshold explorer (``explorer``): the one page that
runs JavaScript, inline like its data, so it too opens from disk offline.

The modules, in the order the data flows:

- ``collect``: the run directory read once into a typed :class:`RunSummary`;
- ``view``: what each section shows, formatted, as plain data;
- ``samples``: the sample-image tables and their thumbnails;
- ``figures``: the matplotlib figures;
- ``explorer``: the threshold explorer, also ``puzzlecam explore``;
- ``html``: the page rendered through ``templates/report.html.j2`` (Jinja2, autoescaped;
  the style in ``templates/report.css``) and published atomically.
"""

from puzzlecam.pipeline.report.collect import RunSummary, load_run, metric_label, table_metrics
from puzzlecam.pipeline.report.html import write_report
from puzzlecam.pipeline.report.samples import pick_samples

__all__ = [
    "write_report",
    "pick_samples",
    "metric_label",
    "table_metrics",
    "RunSummary",
    "load_run",
]
