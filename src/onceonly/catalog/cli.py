"""`onceonly org|catalog|resource|codelist`: the catalog from the server console."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from onceonly.accounts.actor import Actor
from onceonly.catalog import codelists, orgs, service
from onceonly.catalog import repository as repo
from onceonly.catalog.schemas import MappingIn, OrgIn
from onceonly.catalog.vocab import LABELS
from onceonly.cli import console, one_line_errors, unit_of_work
from onceonly.errors import ValidationFailed
from onceonly.store import service as store

org_app = typer.Typer(no_args_is_help=True, help="Organizations (departments).")
catalog_app = typer.Typer(no_args_is_help=True, help="The catalog: tree, Data Package and Excel import/export.")
resource_app = typer.Typer(no_args_is_help=True, help="Resources: list, show, publish, retire.")
codelist_app = typer.Typer(no_args_is_help=True, help="Code lists (代码集) and code mappings (编码对应关系).")


@org_app.command("add")
@one_line_errors
def org_add(
    code: Annotated[str, typer.Argument(help="Unified social credit code (18 chars)")],
    name: Annotated[str, typer.Argument(help="Full name, e.g. 示例市公安局")],
    parent: Annotated[str | None, typer.Option(help="Parent organization's code")] = None,
    region: Annotated[str | None, typer.Option(help="GB/T 2260 division code")] = None,
    short_name: Annotated[str | None, typer.Option(help="Short name, e.g. 公安局")] = None,
) -> None:
    """Register a department (it gets its own department catalog)."""
    with unit_of_work() as session:
        org = orgs.add_org(session, Actor.cli(),
                           OrgIn(code=code, name=name, parent=parent, region=region, short_name=short_name))
        console.print(f"organization {org.code} {org.name} added; department catalog 3{org.number:02d}")


@org_app.command("list")
@one_line_errors
def org_list() -> None:
    """List departments."""
    with unit_of_work() as session:
        table = Table("no.", "code", "name", "short", "parent", "region")
        for o in repo.list_orgs(session):
            table.add_row(f"{o.number:02d}", o.code, o.name, o.short_name or "", o.parent.code if o.parent else "",
                          o.region or "")
        console.print(table)


@catalog_app.command("tree")
@one_line_errors
def catalog_tree() -> None:
    """Show catalogs, categories and resource counts."""
    with unit_of_work() as session:
        root = Tree("政务信息资源目录")
        for c in orgs.catalog_tree(session):
            node = root.add(f"{c.code} {c.name} [dim]({LABELS['kind'][c.kind]})[/dim]")
            for k in c.categories:
                node.add(f"{c.code}{k.code} {k.name} — {k.resource_count}")
        console.print(root)


@catalog_app.command("import")
@one_line_errors
def catalog_import(
    path: Annotated[Path, typer.Argument(help="datapackage.json, or an .xlsx catalog template")],
    publish: Annotated[bool, typer.Option(help="Publish imported drafts")] = False,
) -> None:
    """Import resources from a Frictionless Data Package or an Excel template (all or nothing)."""
    with unit_of_work() as session:
        if path.suffix.lower() == ".xlsx":
            from onceonly.catalog.excel_template import import_template

            resources = import_template(session, Actor.cli(), path)
        else:
            from onceonly.catalog.datapackage import import_datapackage

            resources = import_datapackage(session, Actor.cli(), path)
        if publish:
            for res in resources:
                if res.status == "draft":
                    service.publish_resource(session, Actor.cli(), res)
        console.print(f"imported {len(resources)} resources from {path}")


@catalog_app.command("export")
@one_line_errors
def catalog_export(
    out: Annotated[Path, typer.Option(help="Directory to write datapackage.json into")] = Path("."),
) -> None:
    """Export the catalog as a Frictionless Data Package (datapackage.json)."""
    from onceonly.catalog.datapackage import export_datapackage

    with unit_of_work() as session:
        path = export_datapackage(session, out)
    console.print(f"wrote {path}")


@catalog_app.command("template")
@one_line_errors
def catalog_template(
    out: Annotated[Path, typer.Argument(help="The .xlsx file to write")],
    resource: Annotated[list[str] | None, typer.Option(help="Fill with these resources (name or code)")] = None,
) -> None:
    """Write the stewards' Excel template, blank or filled with resources."""
    from onceonly.catalog.excel_template import write_template

    with unit_of_work() as session:
        chosen = [service.get_resource(session, r) for r in resource or []]
        write_template(session, out, chosen)
    console.print(f"wrote {out}")


@resource_app.command("list")
@one_line_errors
def resource_list(
    q: Annotated[str | None, typer.Option(help="Search name, code or provider")] = None,
    status: Annotated[str | None, typer.Option(help="draft, published or retired")] = None,
) -> None:
    """List resources."""
    with unit_of_work() as session:
        rows, total = repo.search_resources(session, q=q, status=status, limit=1000)
        table = Table("code", "v", "name", "title", "provider", "status", "rows")
        for r in rows:
            table.add_row(r.code, str(r.version), r.name, r.title, r.provider.short_name or r.provider.name,
                          LABELS["status"][r.status], str(store.row_count(session, r)))
        console.print(table)
        console.print(f"{total} resources")


@resource_app.command("show")
@one_line_errors
def resource_show(ref: Annotated[str, typer.Argument(help="Name, code or id")]) -> None:
    """Show a resource's metadata and fields."""
    with unit_of_work() as session:
        out = service.resource_out(service.get_resource(session, ref))
        console.print_json(out.model_dump_json())


@resource_app.command("publish")
@one_line_errors
def resource_publish(ref: Annotated[str, typer.Argument(help="Name, code or id")]) -> None:
    """Publish a draft: its table is created."""
    with unit_of_work() as session:
        res = service.publish_resource(session, Actor.cli(), service.get_resource(session, ref, editing=True))
        console.print(f"published {res.code} v{res.version} as table {res.table_name}")


@resource_app.command("retire")
@one_line_errors
def resource_retire(ref: Annotated[str, typer.Argument(help="Name, code or id")]) -> None:
    """Retire a published resource."""
    with unit_of_work() as session:
        res = service.retire_resource(session, Actor.cli(), service.get_resource(session, ref))
        console.print(f"retired {res.code} v{res.version}")


@codelist_app.command("list")
@one_line_errors
def codelist_list() -> None:
    """List code lists with their source."""
    with unit_of_work() as session:
        table = Table("code", "name", "size", "standard", "source")
        for cl, n in repo.list_code_lists(session):
            table.add_row(cl.code, cl.name, str(n), "yes" if cl.standard else "", f"{cl.source} {cl.source_date or ''}")
        console.print(table)


@codelist_app.command("map")
@one_line_errors
def codelist_map(
    org: Annotated[str, typer.Argument(help="Organization code")],
    code_list: Annotated[str, typer.Argument(help="Standard list, e.g. 'GB/T 2261.1'")],
    csv_path: Annotated[Path, typer.Argument(help="CSV with columns local_code,standard_code[,local_name]")],
) -> None:
    """Load a department's local → standard code mappings from a CSV file."""
    try:
        with csv_path.open(encoding="utf-8-sig", newline="") as fh:
            entries = list(csv.DictReader(fh))
    except UnicodeDecodeError:
        raise ValidationFailed(f"{csv_path} is not UTF-8; save it as UTF-8 CSV", field="csv_path") from None
    if entries and not {"local_code", "standard_code"} <= set(entries[0]):
        raise ValidationFailed("CSV needs the columns local_code and standard_code", field="csv_path")
    with unit_of_work() as session:
        n = codelists.set_mappings(session, Actor.cli(), MappingIn(org=org, code_list=code_list, entries=entries))
    console.print(f"{n} mappings set for {org} → {code_list}")
