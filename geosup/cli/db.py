"""``geosup db init``."""

from __future__ import annotations

import click

from geosup.cli.options import store_option

__all__ = ["db"]


@click.group()
def db() -> None:
    """Manage the store."""


@db.command("init")
@store_option
def init(store: str) -> None:
    """Create the store's schema (safe to run again)."""
    from geosup.store import open_store

    with open_store(store, create=True) as st:
        st.init()
        url = st.url
    click.echo(f"store ready: {url}")
