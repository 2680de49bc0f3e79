#!/usr/bin/env python3
"""Refreshes the Azure reference tables that handlers/tests/infra_templates.rs checks infra/ against.

    python3 infra/reference/refresh.py roles
        Rewrites built-in-roles.tsv from the summary table of Microsoft Learn's "Azure built-in
        roles" page (MicrosoftDocs/azure-docs, articles/role-based-access-control/built-in-roles.md).

    python3 infra/reference/refresh.py types [--bicep-types-az DIR]
        Rewrites bicep-types.json: for every 'Type@apiVersion' that infra/*.bicep declares, the
        resource type and every type it refers to, copied from the generated types.json of
        Azure/bicep-types-az (a checkout in DIR, else a shallow clone into a temporary folder).

Standard library only; needs git and network access to GitHub.
"""

import argparse
import datetime
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
INFRA = HERE.parent
ROLES_URL = (
    "https://raw.githubusercontent.com/MicrosoftDocs/azure-docs/main/"
    "articles/role-based-access-control/built-in-roles.md"
)
ROW = re.compile(
    r"^> \| <a name='[^']*'></a>\[(?P<name>[^\]]+)\]\([^)]*\) \| .* \| "
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) \|$"
)
RESOURCE = re.compile(r"^\s*resource\s+\w+\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'", re.M)


def refresh_roles() -> None:
    with urllib.request.urlopen(ROLES_URL, timeout=60) as answer:
        page = answer.read().decode("utf-8")
    date = re.search(r"^ms\.date:\s*(\S+)", page, re.M)
    section = ""
    rows = []
    for line in page.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        m = ROW.match(line)
        if m:
            rows.append((m["id"], m["name"], section))
    if len(rows) < 100:
        sys.exit(f"only {len(rows)} rows found: has the page's table changed?")
    header = [
        "# Azure built-in roles: id <TAB> name <TAB> section, from the summary table of Microsoft Learn's",
        '# "Azure built-in roles" page (MicrosoftDocs/azure-docs, articles/role-based-access-control/built-in-roles.md,',
        f"# main branch, ms.date {date[1] if date else 'unknown'}; read {datetime.date.today().isoformat()}).",
        "# The whole table. `python3 infra/reference/refresh.py roles` rewrites this file.",
        "# handlers/tests/infra_templates.rs checks every role id in infra/ against it.",
    ]
    text = "\n".join(header + ["\t".join(r) for r in rows]) + "\n"
    (HERE / "built-in-roles.tsv").write_text(text)
    print(f"built-in-roles.tsv: {len(rows)} roles")


def declared_types() -> list[tuple[str, str]]:
    found = set()
    for bicep in sorted(INFRA.glob("*.bicep")):
        for m in RESOURCE.finditer(bicep.read_text()):
            found.add((m["type"], m["version"]))
    return sorted(found)


def closure(types: list, root: int) -> list:
    """The types reachable from index `root`, renumbered so that the root is #/0."""
    order, seen, stack = [], {}, [root]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen[i] = len(order)
        order.append(i)
        for ref in re.findall(r'"\$ref": "#/(\d+)"', json.dumps(types[i])):
            stack.append(int(ref))

    def renumber(value):
        if isinstance(value, dict):
            if set(value) == {"$ref"}:
                return {"$ref": f"#/{seen[int(value['$ref'][2:])]}"}
            return {k: renumber(v) for k, v in value.items()}
        if isinstance(value, list):
            return [renumber(v) for v in value]
        return value

    def strip(value):
        # Descriptions are prose for people; the test needs names, flags and shapes only.
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "description"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip(renumber(types[i])) for i in order]


def refresh_types(checkout: pathlib.Path) -> None:
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    files = subprocess.run(
        ["git", "-C", str(checkout), "ls-tree", "-r", "--name-only", "HEAD", "generated"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    index = {}
    for path in files:
        parts = path.split("/")
        if len(parts) == 5 and parts[4] == "types.json":
            index.setdefault((parts[2], parts[3]), []).append(path)
    out = {}
    for rtype, version in declared_types():
        namespace = rtype.split("/")[0].lower()
        candidates = index.get((namespace, version), [])
        wanted = f"{rtype}@{version}"
        for path in candidates:
            blob = subprocess.run(
                ["git", "-C", str(checkout), "show", f"HEAD:{path}"],
                capture_output=True, text=True, check=True,
            ).stdout
            types = json.loads(blob)
            hit = [i for i, t in enumerate(types)
                   if t.get("$type") == "ResourceType" and t.get("name", "").lower() == wanted.lower()]
            if hit:
                out[wanted] = {"file": path, "types": closure(types, hit[0])}
                break
        else:
            print(f"warning: {wanted} is in no generated types.json (unknown type or API version)")
    document = {
        "source": "Azure/bicep-types-az, generated/<provider>/<namespace>/<apiVersion>/types.json",
        "commit": commit,
        "read": datetime.date.today().isoformat(),
        "note": "Each entry: the resource type (#/0) and every type it refers to, renumbered. "
                "Rewritten by `python3 infra/reference/refresh.py types`.",
        "resources": out,
    }
    # One type per line: small, and a refresh's diff shows which types changed.
    lines = ["{"]
    for key in ("source", "commit", "read", "note"):
        lines.append(f" {json.dumps(key)}: {json.dumps(document[key])},")
    lines.append(' "resources": {')
    for n, (name, entry) in enumerate(sorted(out.items())):
        lines.append(f"  {json.dumps(name)}: {{\"file\": {json.dumps(entry['file'])}, \"types\": [")
        body = [f"   {json.dumps(t, sort_keys=True, separators=(',', ':'))}" for t in entry["types"]]
        lines.append(",\n".join(body))
        lines.append("  ]}" + ("," if n + 1 < len(out) else ""))
    lines.append(" }")
    lines.append("}")
    (HERE / "bicep-types.json").write_text("\n".join(lines) + "\n")
    print(f"bicep-types.json: {len(out)} resource types from {commit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["roles", "types"])
    parser.add_argument("--bicep-types-az", type=pathlib.Path, help="a checkout of Azure/bicep-types-az")
    args = parser.parse_args()
    if args.what == "roles":
        refresh_roles()
    elif args.bicep_types_az:
        refresh_types(args.bicep_types_az)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["git", "clone", "--depth", "1", "https://github.com/Azure/bicep-types-az", tmp],
                check=True,
            )
            refresh_types(pathlib.Path(tmp))


if __name__ == "__main__":
    main()
