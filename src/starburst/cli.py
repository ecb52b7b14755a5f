"""The ``starburst`` command."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from ._version import __version__


class _Group(click.Group):
    """A command group whose commands end in a sentence, never a traceback, and whose
    command list shows each command's whole first paragraph."""

    group_class = type  # subgroups are of this class too

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import StarburstError

        try:
            return super().invoke(ctx)
        except StarburstError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if not type(exc).__module__.startswith(("botocore", "boto3")):
                raise
            raise click.ClickException(_aws_failure(exc)) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, _first_paragraph(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _first_paragraph(command: click.Command) -> str:
    """A command's help up to its first blank line, whole (click cuts it at the first
    period, so "e.g." ended a sentence)."""
    text = command.short_help or (command.help or "").split("\f")[0]
    return " ".join(text.strip().split("\n\n")[0].split())


def _aws_failure(exc: Exception) -> str:
    """What an AWS error that escaped a command's own handling means, as a sentence."""
    from .aws.connection import translate_errors

    try:
        with translate_errors("run this command"):
            raise exc
    except Exception as translated:
        return str(translated)
    return str(exc)  # pragma: no cover - translate_errors always raises


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="starburst")
def main() -> None:
    """Burst a slow Python loop onto many workers: processes on this machine, or AWS
    Fargate or EC2 instances after `starburst setup` (your environment as the worker image,
    a cost cap, sessions that run on while you are away).

    In Python: results = starburst.map(fn, items, workers=8)
    """
    ctx = click.get_current_context()
    if ctx.invoked_subcommand != "sandbox":
        from .emulator.active import use_running_sandbox

        banner = use_running_sandbox()
        if banner:
            click.echo(f"starburst: {banner}", err=True)


@main.command()
@click.option("--paths", default=10_000, show_default=True, help="Monte Carlo paths to simulate.")
@click.option("--workers", type=int, default=None, help="Workers (default: the backend's).")
@click.option(
    "--backend",
    default=None,
    help="Where to run: local or fargate (default: the configured backend, else local).",
)
def demo(paths: int, workers: int | None, backend: str | None) -> None:
    """Simulate PATHS portfolio paths with starburst.map and print a summary (on the
    configured backend: local processes unless you chose another)."""
    from .demo import run_demo

    summary = run_demo(paths, workers=workers, backend=backend)
    click.echo(
        f"Simulated {summary['paths']:,} portfolio paths in {summary['seconds']:.2f} s "
        f"on the {summary['backend']} backend.\n"
        f"  final value: mean {summary['mean_final_value']:.3f}, "
        f"5th-95th percentile {summary['p5_final_value']:.3f} - {summary['p95_final_value']:.3f}\n"
        f"  mean Sharpe ratio: {summary['mean_sharpe']:.3f}"
    )


_region = click.option("--region", default=None, help="AWS region (default: configured).")
_profile = click.option("--profile", default=None, help="AWS profile (default: configured).")


@main.command()
@_region
@_profile
@click.option(
    "--ec2",
    is_flag=True,
    help="Also set up the ec2 backend: instance role, cluster, launch templates, Spot and "
    "on-demand Auto Scaling groups (empty until a run), S3 endpoint. Free while idle.",
)
def setup(region: str | None, profile: str | None, ec2: bool) -> None:
    """Create everything starburst needs in your AWS account (safe to run again)."""
    from .aws.provision import setup as run_setup

    run_setup(region, profile, say=click.echo, ec2=ec2)


@main.command()
@_region
@_profile
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def teardown(region: str | None, profile: str | None, yes: bool) -> None:
    """Remove every AWS resource that setup created (and nothing else)."""
    from .aws.provision import teardown as run_teardown

    if not yes:
        click.confirm(
            "Remove starburst's bucket (with all run data), image repository, roles, cluster, "
            "log group and security group?",
            abort=True,
        )
    run_teardown(region, profile, say=click.echo)


@main.command()
@_region
@_profile
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(region: str | None, profile: str | None, as_json: bool) -> None:
    """Show the configuration, starburst's AWS resources, quotas and running workers."""
    import json

    from .aws.provision import setup_status

    report = setup_status(region, profile)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"account {report['account_id']}, region {report['region']}")
    click.echo(f"configured: {'yes' if report['configured'] else 'no: run `starburst setup`'}")
    for name, state in report["resources"].items():
        click.echo(f"  {name:<34} {state}")
    for label, value in report["quotas"].items():
        click.echo(f"  quota {label:<28} {'unknown' if value is None else f'{value:g} vCPUs'}")
    click.echo(f"  running workers                    {report['running_workers']}")


@main.group()
def config() -> None:
    """Show or change settings (stored in your user config folder, as TOML)."""


@config.command("show")
def config_show() -> None:
    """Print the configuration file."""
    import tomli_w

    from .config import Config, config_path

    current = Config.load()
    document = dict(current.settings)
    if current.aws:
        document["aws"] = current.aws
    click.echo(f"# {config_path()}")
    click.echo(tomli_w.dumps(document) or "# (empty: defaults apply)")


@config.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE (e.g. `starburst config set max_cost 10`)."""
    from .config import Config

    current = Config.load()
    parsed = current.set(key, value)
    current.save()
    click.echo(f"{key} = {parsed!r}")


@config.command("unset")
@click.argument("key")
def config_unset(key: str) -> None:
    """Remove KEY, so that its default applies."""
    from .config import Config

    current = Config.load()
    current.unset(key)
    current.save()
    click.echo(f"{key} unset")


@main.command()
@click.argument("session_id")
@click.option("--worker", default=None, help="One worker: its number or task id.")
@click.option("--tail", default=50, show_default=True, help="Lines per worker.")
@click.option("--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
def logs(session_id: str, worker: str | None, tail: int, follow: bool) -> None:
    """Show the output of a session's workers (local log files, or CloudWatch Logs)."""
    from .aws import logs as worker_logs
    from .detached import local_log_files

    files = local_log_files(session_id, worker)
    if files is not None:
        _local_logs(files, tail, follow)
        return
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            for line in worker_logs.follow(session_id, worker):
                click.echo(line)
        return
    found = worker_logs.logs(session_id, worker, tail)
    if not found:
        click.echo(f"no worker logs found for {session_id}")
    for name, lines in found.items():
        click.echo(f"== worker {name}")
        for line in lines:
            click.echo(line)


@main.command()
@click.argument("session_id")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None,
    help="The HTML file to write (default: SESSION_ID.html).",
)  # fmt: skip
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Also a PNG picture.")
@click.option("--json", "as_json", type=click.Path(dir_okay=False), default=None,
              help="Also the run record as JSON.")  # fmt: skip
def report(session_id: str, output: str | None, png: str | None, as_json: str | None) -> None:
    """Write a session's report: one HTML file that opens offline, with a timeline of its
    workers and chunks, progress, item times, cost, settings and errors. Any session,
    finished or running. Needs `pip install "starburst[report]"`."""
    from .reporting.timeline import report as make_report

    target = output or f"{session_id}.html"
    timeline = make_report(session_id, target)
    click.echo(f"{timeline}: wrote {target}")
    if png is not None:
        click.echo(f"wrote {timeline.save_png(png)}")
    if as_json is not None:
        with open(as_json, "w", encoding="utf-8") as handle:
            handle.write(timeline.to_json())
        click.echo(f"wrote {as_json}")


@main.command()
@click.option("--port", type=int, default=0, help="The port to serve on (default: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="127.0.0.1 or localhost: the dashboard serves this machine only.")  # fmt: skip
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
def dashboard(port: int, host: str, no_browser: bool) -> None:
    """A live web page of every session: state, progress, workers, cost so far and ETA, a
    link to each session's report, and buttons to extend, cancel and clean up. Served on
    this machine only, until Ctrl-C. The report needs `pip install "starburst[report]"`."""
    from .reporting.dashboard import dashboard as serve

    board = serve(port=port, open_browser=not no_browser, host=host)
    click.echo(f"starburst dashboard at {board.url} (Ctrl-C stops it)")
    board.wait()


def _local_logs(files: list[Any], tail: int, follow: bool) -> None:
    """Print the last ``tail`` lines of each local log file; with ``follow``, then every new
    line as it is written, until Ctrl-C."""
    import time

    offsets = {}
    for path in files:
        text = path.read_text(errors="replace")
        offsets[path] = len(text.encode())
        click.echo(f"== worker {path.stem}")
        for line in text.splitlines()[-tail:]:
            click.echo(line)
    with contextlib.suppress(KeyboardInterrupt):
        while follow:
            time.sleep(0.5)
            for path in files:
                with open(path, "rb") as handle:
                    handle.seek(offsets[path])
                    new = handle.read()
                offsets[path] += len(new)
                for line in new.decode(errors="replace").splitlines():
                    click.echo(f"{path.stem}: {line}")


@main.group(invoke_without_command=True)
@_region
@_profile
@click.pass_context
def quota(ctx: click.Context, region: str | None, profile: str | None) -> None:
    """Show the vCPU quotas (Fargate's, and EC2's after setup --ec2), what is in use.

    `starburst quota request VCPUS` asks AWS for more; `starburst quota check ID` follows it.
    """
    ctx.obj = {"region": region, "profile": profile}
    if ctx.invoked_subcommand is not None:
        return
    from .aws.connection import connect
    from .aws.quotas import SIZES, ec2_quotas
    from .aws.quotas import quota as read_quota
    from .config import Config

    quotas = read_quota(region, profile)
    if Config.load().aws.get("ec2"):
        quotas += ec2_quotas(connect(region, profile))
    for found in quotas:
        limit = "unknown" if found.limit is None else f"{found.limit:g} vCPUs"
        click.echo(f"{found.label} ({found.code}): limit {limit}, {found.used:g} vCPUs in use")
        if found.free is not None:
            fits = ", ".join(f"{found.workers_that_fit(cpu)} x cpu={cpu:g}" for cpu in SIZES)
            click.echo(f"  workers that fit now: {fits}")


@quota.command("request")
@click.argument("vcpus", type=float)
@click.option("--spot", is_flag=True, help="Raise the Fargate Spot quota (default: on-demand).")
@click.pass_obj
def quota_increase_request(where: dict[str, str | None], vcpus: float, spot: bool) -> None:
    """Ask AWS to raise the Fargate vCPU quota to VCPUS; prints the request id."""
    from .aws.quotas import request_quota_increase

    request = request_quota_increase(vcpus, spot=spot, **where)
    click.echo(f"Requested: {request}")
    click.echo(f"Follow it with `starburst quota check {request.request_id}`.")


@quota.command("check")
@click.argument("request_id")
@click.pass_obj
def quota_check(where: dict[str, str | None], request_id: str) -> None:
    """Show the state of a quota increase request."""
    from .aws.quotas import quota_increase_status

    click.echo(str(quota_increase_status(request_id, **where)))


@main.group()
def env() -> None:
    """The worker image of your Python environment: built without Docker, cached in ECR."""


@env.command("show")
def env_show() -> None:
    """Show what would be shipped to the workers, the image tag and its estimated size."""
    from .env.build import plan_image, repository_if_set_up

    repository = repository_if_set_up()
    plan = plan_image(repository)
    present = repository and repository.registry.manifest_digest(repository.name, plan.tag)
    environment = plan.environment
    packages = sum(d.size for d in environment.distributions)
    click.echo(f"python {environment.python} on linux/{plan.architecture}, base {plan.base}")
    click.echo(f"starburst {environment.starburst}")
    click.echo(f"{len(environment.distributions)} distributions:")
    for dist in environment.distributions:
        pinned = f"{dist.name}=={dist.version}"
        source = "" if dist.requirement == pinned else f"  (from {dist.requirement})"
        click.echo(f"  {pinned}{source}")
    modules = sorted({name.split("/")[0].removesuffix(".py") for name, _ in environment.code})
    click.echo(f"local code: {', '.join(modules)}")
    click.echo(f"tag {plan.tag}")
    click.echo(
        f"estimated size: {packages / 1e6:.0f} MB of packages and "
        f"{environment.code_size / 1e6:.1f} MB of code before compression, plus the base"
    )
    if repository is None:
        click.echo("image: not looked up (run `starburst setup` first)")
    else:
        click.echo(f"image: {repository.uri(plan.tag)} ({'built' if present else 'not built yet'})")


@env.command("build")
@click.option("--force", is_flag=True, help="Build and push even if the image exists.")
def env_build(force: bool) -> None:
    """Build the worker image of this environment and push it (once per environment)."""
    from .aws.connection import connect
    from .config import Config
    from .env.build import ensure_image

    resources = Config.load().aws
    image = ensure_image(
        connect(resources.get("region")),
        resources,
        force=force,
        progress=lambda line: click.echo(line, err=True),
    )
    if image.cached:
        click.echo(f"{image.uri} (already built)")
    else:
        click.echo(f"{image.uri} ({image.size / 1e6:.1f} MB, {len(image.uploaded)} blobs sent)")


@env.command("prune")
@click.option(
    "--older-than", "days", default=30.0, show_default=True, help="Keep images used this recently."
)
def env_prune(days: float) -> None:
    """Delete environment images unused for DAYS (never one a live session uses)."""
    from .env.prune import prune

    deleted = prune(days, say=click.echo)
    click.echo(f"{len(deleted)} image(s) deleted")


@main.group()
def sessions() -> None:
    """Detached sessions (starburst.session): list, check, collect, extend, clean up."""


def _attach(session_id: str, allow_expired: bool = True) -> Any:
    from .detached import attach

    return attach(session_id, allow_expired=allow_expired)


@sessions.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_ls(as_json: bool) -> None:
    """List sessions: id, created, backend, state, progress and cost."""
    import json
    import time

    from .detached import list_sessions

    found = list_sessions()
    if as_json:
        click.echo(json.dumps([status.to_dict() for status in found], indent=1))
        return
    if not found:
        click.echo("no sessions")
        return
    click.echo(f"{'SESSION':<26} {'CREATED (UTC)':<17} {'BACKEND':<8} {'STATE':<9} "
               f"{'ITEMS':>15} {'WORKERS':>7} COST")  # fmt: skip
    for status in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(status.created))
        cost = "-" if status.cost is None else f"${status.cost:.2f}"
        items = f"{status.finished}/{status.items}"
        click.echo(f"{status.session_id:<26} {created:<17} {status.backend:<8} "
                   f"{status.state:<9} {items:>15} {status.workers:>7} {cost}")  # fmt: skip


@sessions.command("status")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_status(session_id: str, as_json: bool) -> None:
    """Per run: items done, failed and pending, ETA; workers up; cost so far."""
    import json

    from .detached import session_status

    status = session_status(session_id)
    click.echo(json.dumps(status.to_dict(), indent=1) if as_json else str(status))


@sessions.command("collect")
@click.argument("session_id")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="File to write: .json for JSON, anything else for a pickle.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for every item (or write what is done now).")  # fmt: skip
@click.option("--timeout", type=float, default=None, help="Seconds to wait at most.")
def sessions_collect(session_id: str, output: str, wait: bool, timeout: float | None) -> None:
    """Write every run's results (in submission order, each in input order) to a file.

    Items that failed hold their exception (in JSON: its text).
    """
    import json

    import cloudpickle

    from .detached import PENDING

    results = _attach(session_id).collect(wait=wait, timeout=timeout, errors="return")
    flat = [r for run in results for r in (run if isinstance(run, list) else [run])]
    failed = sum(isinstance(r, BaseException) for r in flat)
    pending = sum(r is PENDING for r in flat)
    if output.endswith(".json"):
        text = json.dumps(results, default=lambda v: "PENDING" if v is PENDING else repr(v))
        with open(output, "w") as handle:
            handle.write(text)
    else:
        with open(output, "wb") as handle:
            cloudpickle.dump(results, handle)
    click.echo(
        f"wrote {len(results)} runs ({len(flat)} items: {failed} failed, {pending} pending) "
        f"to {output}"
    )


@sessions.command("extend")
@click.argument("session_id")
@click.argument("by", required=False)
@click.option("--max-cost", type=float, default=None, help="A new cost cap, in dollars.")
def sessions_extend(session_id: str, by: str | None, max_cost: float | None) -> None:
    """Move a session's deadline BY later (e.g. 12h, 90m, 2d) and/or raise its cost cap;
    an expired or capped session resumes its unfinished work."""
    import time

    deadline = _attach(session_id).extend(by, max_cost=max_cost)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    click.echo(f"{session_id} now runs until {until}")


@sessions.command("cleanup")
@click.argument("session_ids", nargs=-1)
@click.option(
    "--expired", is_flag=True,
    help="Every expired, capped, stalled or abandoned session, and any past the data expiry.",
)  # fmt: skip
def sessions_cleanup(session_ids: tuple[str, ...], expired: bool) -> None:
    """Stop a session's workers and delete its data (its results too)."""
    import time

    from .aws.resources import RUN_DATA_EXPIRY_DAYS
    from .detached import list_sessions

    chosen = list(session_ids)
    if expired:  # never a "done" session's uncollected results, until its data expires
        ended = ("expired", "capped", "stalled", "abandoned", "closed")
        old = time.time() - RUN_DATA_EXPIRY_DAYS * 86400
        chosen += [s.session_id for s in list_sessions() if s.state in ended or s.created < old]
    if not session_ids and not expired:
        raise click.UsageError("name a session id, or pass --expired")
    if not chosen:
        click.echo("no expired, capped, stalled or abandoned sessions: nothing to clean up")
    for session_id in dict.fromkeys(chosen):
        _remove(session_id)
        click.echo(f"{session_id}: workers stopped, data deleted")


def _remove(session_id: str) -> None:
    """Clean up any session, attachable or not (an abandoned Cluster's too)."""
    from .detached import remove_session

    remove_session(session_id)


@main.group()
def sandbox() -> None:
    """An emulated AWS account on this machine: try the cloud path offline.

    `starburst sandbox start` runs it in the background; until `starburst sandbox stop`,
    every starburst command uses it (`starburst setup`, `starburst demo --backend fargate`).
    Needs `pip install "starburst[sandbox]"`.
    """


@sandbox.command("start")
@click.option(
    "--images",
    is_flag=True,
    help="Run environment sync too, against a local registry (needs docker-registry).",
)
def sandbox_start(images: bool) -> None:
    """Start the sandbox in the background (it keeps its config in the cache folder)."""
    from .emulator.active import start_sandbox

    click.echo(start_sandbox(images))


@sandbox.command("stop")
def sandbox_stop() -> None:
    """Stop the sandbox and every worker it runs."""
    from .emulator.active import stop_sandbox

    click.echo(stop_sandbox())


@sandbox.command("status")
def sandbox_status() -> None:
    """Say whether the sandbox runs, and where."""
    from .emulator.active import running_sandbox

    state = running_sandbox()
    click.echo(f"running at {state['url']} (process {state['pid']})" if state else "not running")


@sandbox.command("fault")
@click.argument("kind", type=click.Choice(["spot-interrupt"]))
@click.option("--workers", default=1, show_default=True, help="How many workers to interrupt.")
def sandbox_fault(kind: str, workers: int) -> None:
    """Inflict a fault on the sandbox's running workers: spot-interrupt takes them away as a
    Spot interruption does (their chunks go back; nothing is lost)."""
    from .emulator.active import request_fault

    request_fault(kind, workers)
    click.echo(f"asked the sandbox to {kind} {workers} worker(s)")
