"""Suite files as TOML in the layout the suite tests want (top-level tables as ``[header]`` sections,
every key quoted); values are written by harness.testing's TOML writer."""

from __future__ import annotations

from harness.testing import toml_string, toml_value


def toml_document(doc: dict) -> str:
    """Scalars and arrays as ``key = value`` first, then each table as a ``[header]`` section (its
    own nested tables inline), so both TOML forms appear."""
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_string(key)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
