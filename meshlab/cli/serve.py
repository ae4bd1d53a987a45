"""``meshlab serve``: meshlab as the judge of Argo Rollouts analyses and Flagger canaries.

Everything heavy (numpy, Prometheus client, Starlette, uvicorn) is imported inside the command, so
``meshlab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshlab.errors import ConfigError


def serve_command(
    prometheus_url: Annotated[
        str, typer.Option("--prometheus-url", help="Prometheus holding the Istio/Envoy metrics.")
    ],
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir", help="Where sessions are kept (a persistent volume in a cluster)."
        ),
    ] = Path("/var/lib/meshlab-serve"),
    analysis: Annotated[
        Path | None,
        typer.Option(
            "--analysis",
            help="Analysis profiles: an Experiment spec, a ConfigMap manifest or mounted "
            "directory, or {name: analysis}; profile 'default' applies when a request names none.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    token_env: Annotated[
        str | None,
        typer.Option("--prometheus-token-env", help="Env var holding Prometheus' bearer token."),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--prometheus-token-file", help="File holding Prometheus' bearer token (re-read)."
        ),
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option("--prometheus-ca-file", help="CA bundle for Prometheus' TLS.")
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--prometheus-insecure", help="Skip TLS verification (test servers only)."),
    ] = False,
    read_lag: Annotated[
        float,
        typer.Option(
            "--prometheus-read-lag",
            help="Read counters this many seconds in the past, so a scrape still in flight cannot "
            "change a look's evidence later (at least the scrape timeout; more behind remote-write).",
        ),
    ] = 10.0,
    auth_token_env: Annotated[
        str | None,
        typer.Option(
            "--auth-token-env",
            help="Env var holding the bearer token callers must present (optional).",
        ),
    ] = None,
) -> None:
    """Answer Argo Rollouts web metrics and Flagger webhooks with meshlab's sequential verdicts."""
    from meshlab.metrics import load_token
    from meshlab.serve import Judge, PrometheusSettings, ServeSettings, load_profiles
    from meshlab.serve.app import create_app, run

    if not (0 < port < 65536):
        raise ConfigError(f"--port: {port} is not a TCP port (1-65535)")
    if not prometheus_url.startswith(("http://", "https://")):
        raise ConfigError("--prometheus-url: give an http:// or https:// URL")
    if not 0 <= read_lag <= 600:
        raise ConfigError(f"--prometheus-read-lag: {read_lag} s is outside 0-600 s")
    load_token(token_env, token_file)  # a missing token fails now (exit 2), not at the first look
    settings = ServeSettings(
        prometheus=PrometheusSettings(
            prometheus_url,
            token_env=token_env,
            token_file=token_file,
            ca_file=ca_file,
            verify_tls=not insecure,
            read_lag=read_lag,
        ),
        state_dir=state_dir,
        profiles=load_profiles(analysis),
        auth_token_env=auth_token_env,
    )
    judge = Judge(settings)
    create_app(judge)  # fail fast (exit 2) on a missing auth token before binding the port
    run(judge, host, port)


def register(app: typer.Typer) -> None:
    """Add ``meshlab serve`` to the app."""
    app.command("serve")(serve_command)
