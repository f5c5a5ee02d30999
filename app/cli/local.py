"""`collectq collect`: run collectors in-process, no servers, same envelope as the API.

On a terminal, progress goes to stderr (`TerminalProgress`, app/cli/progress.py: the
client's `jobs watch` draws the same lines): one line per collector, ``[2/3] dns …``
while it runs, then its outcome and duration. The envelope on stdout is the same with
or without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.cli.progress import Progress, TerminalProgress, progress_line
from app.jobs.envelope import Stopwatch, build_envelope, failed_body, succeeded_body, utcnow
from app.jobs.ids import new_id
from app.runtime import load_collectors, network_policy
from app.settings import Settings
from collectors.base import CollectContext, CollectorError
from collectors.runner import run_collector_once
from schemas.status import CollectorStatus, JobStatus, final_job_status

__all__ = ["Progress", "TerminalProgress", "collect_locally", "progress_line"]


def collect_locally(
    settings: Settings,
    target: str,
    names: list[str],
    options: dict[str, dict[str, Any]],
    artifacts_dir: Path | None = None,
    save: Mapping[str, Path] | None = None,
    progress: Progress | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run each collector once; return (exit code, envelope). Exit 0 only if all succeeded.

    Artifacts named in `save` go to the file given there; the rest to `artifacts_dir`.
    `progress` hears of each collector as it starts and finishes.
    """
    registry = load_collectors(settings)
    policy = network_policy(settings)
    job_id = new_id("j_")
    created = utcnow()
    results: dict[str, Any] = {}
    try:
        for index, name in enumerate(names, 1):
            if progress is not None:
                progress.started(index, name)
            results[name] = _run_one(
                registry,
                name,
                target,
                options.get(name, {}),
                policy,
                job_id,
                artifacts_dir,
                save or {},
            )
            if progress is not None:
                progress.finished(index, name, results[name])
    finally:
        registry.close()
    status = final_job_status(r["status"] for r in results.values()) or JobStatus.FAILED
    envelope = build_envelope(
        job_id=job_id,
        status=status,
        target=target,
        collectors=names,
        created_at=created,
        started_at=created,
        finished_at=utcnow(),
        labels={},
        schedule_id=None,
        results=results,
    )
    return (0 if status == JobStatus.SUCCEEDED else 1), envelope


def _run_one(
    registry: Any,
    name: str,
    target: str,
    options: dict[str, Any],
    policy: Any,
    job_id: str,
    artifacts_dir: Path | None,
    save: Mapping[str, Path],
) -> dict[str, Any]:
    watch = Stopwatch()
    try:
        collector = registry.get(name)
    except KeyError:
        info = registry.info(name)
        reason = (
            info.reason if info else f"unknown collector (known: {', '.join(registry.names())})"
        )
        outcome: Any = CollectorError(reason)
    else:
        outcome = run_collector_once(
            collector, target, options, CollectContext(policy=policy, job_id=job_id)
        )
    if isinstance(outcome, CollectorError):
        body = failed_body(outcome, **watch.timing())
        return {"status": CollectorStatus.FAILED, "attempts": 1, **body}
    artifacts = []
    for art in outcome.artifacts:
        meta: dict[str, Any] = {
            "name": art.name,
            "content_type": art.content_type,
            "size": len(art.body),
        }
        path = save.get(art.name) or (artifacts_dir / art.name if artifacts_dir else None)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(art.body)
            meta["path"] = str(path)
        artifacts.append(meta)
    body = succeeded_body(outcome.data, artifacts, **watch.timing())
    return {"status": CollectorStatus.SUCCEEDED, "attempts": 1, **body}
